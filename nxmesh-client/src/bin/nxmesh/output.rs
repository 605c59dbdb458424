//! Printing resources as a table, JSON or YAML.

use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Columns: header and the JSON field it shows.
pub(crate) type Columns = [(&'static str, &'static str)];

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn print_items<T: Serialize>(
    format: Format,
    cols: &Columns,
    items: &[T],
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(items)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(items)?),
        Format::Table => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    let v = serde_json::to_value(i)?;
                    Ok(cols.iter().map(|(_, f)| cell(&v[*f])).collect())
                })
                .collect::<anyhow::Result<_>>()?;
            let widths: Vec<usize> = cols
                .iter()
                .enumerate()
                .map(|(i, (h, _))| {
                    rows.iter()
                        .map(|r| r[i].len())
                        .chain([h.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<&str>| {
                let parts: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                println!("{}", parts.join("  ").trim_end());
            };
            line(cols.iter().map(|(h, _)| *h).collect());
            for r in &rows {
                line(r.iter().map(String::as_str).collect());
            }
        }
    }
    Ok(())
}

pub(crate) fn print_one<T: Serialize>(
    format: Format,
    cols: &Columns,
    item: &T,
) -> anyhow::Result<()> {
    match format {
        Format::Table if !cols.is_empty() => print_items(format, cols, std::slice::from_ref(item)),
        // Without columns a table has nothing to choose: show YAML.
        Format::Table | Format::Yaml => {
            print!("{}", serde_yaml::to_string(item)?);
            Ok(())
        }
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(item)?);
            Ok(())
        }
    }
}
