//! The compiled schema holds every service, message, field and enum value
//! of the specification's gRPC section, with the specification's numbers.

use std::collections::BTreeMap;

use prost::Message as _;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet};

fn ours() -> FileDescriptorProto {
    let set = FileDescriptorSet::decode(nxmesh_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut files: Vec<_> = set
        .file
        .into_iter()
        .filter(|f| f.name() == "nxmesh/agent/v1/agent.proto")
        .collect();
    assert_eq!(files.len(), 1);
    files.remove(0)
}

fn spec() -> FileDescriptorProto {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it");
    let set = protox::compile(["spec_agent.proto"], [dir]).unwrap();
    set.file
        .into_iter()
        .find(|f| f.name() == "spec_agent.proto")
        .unwrap()
}

/// Every message, including nested ones (map entries), by full name.
fn messages(file: &FileDescriptorProto) -> BTreeMap<String, DescriptorProto> {
    fn walk(prefix: &str, msgs: &[DescriptorProto], out: &mut BTreeMap<String, DescriptorProto>) {
        for m in msgs {
            let name = format!("{prefix}.{}", m.name());
            walk(&name, &m.nested_type, out);
            out.insert(name, m.clone());
        }
    }
    let mut out = BTreeMap::new();
    walk(file.package(), &file.message_type, &mut out);
    out
}

fn enums(file: &FileDescriptorProto) -> BTreeMap<String, EnumDescriptorProto> {
    file.enum_type
        .iter()
        .map(|e| (e.name().to_owned(), e.clone()))
        .collect()
}

#[test]
fn schema_matches_the_specification() {
    let (ours, spec) = (ours(), spec());
    assert_eq!(ours.package(), "nxmesh.agent.v1");
    assert_eq!(ours.package(), spec.package());
    assert_eq!(ours.syntax(), "proto3");

    // Services and methods.
    assert_eq!(spec.service.len(), 1);
    for s in &spec.service {
        let o = ours
            .service
            .iter()
            .find(|o| o.name() == s.name())
            .unwrap_or_else(|| panic!("service {} missing", s.name()));
        for m in &s.method {
            let om = o
                .method
                .iter()
                .find(|x| x.name() == m.name())
                .unwrap_or_else(|| panic!("rpc {} missing", m.name()));
            assert_eq!(om.input_type(), m.input_type(), "{}", m.name());
            assert_eq!(om.output_type(), m.output_type(), "{}", m.name());
            assert_eq!(om.client_streaming(), m.client_streaming(), "{}", m.name());
            assert_eq!(om.server_streaming(), m.server_streaming(), "{}", m.name());
        }
    }

    // Messages and fields, with numbers, types, labels and oneofs.
    let (om, sm) = (messages(&ours), messages(&spec));
    assert!(
        sm.len() >= 32,
        "the specification has at least 32 messages, found {}",
        sm.len()
    );
    for (name, s) in &sm {
        let o = om
            .get(name)
            .unwrap_or_else(|| panic!("message {name} missing"));
        for f in &s.field {
            let of = o
                .field
                .iter()
                .find(|x| x.name() == f.name())
                .unwrap_or_else(|| panic!("{name}.{} missing", f.name()));
            assert_eq!(of.number(), f.number(), "{name}.{} number", f.name());
            assert_eq!(of.r#type(), f.r#type(), "{name}.{} type", f.name());
            assert_eq!(
                of.type_name(),
                f.type_name(),
                "{name}.{} type name",
                f.name()
            );
            assert_eq!(of.label(), f.label(), "{name}.{} label", f.name());
            let oneof = |d: &DescriptorProto, i: Option<i32>| {
                i.map(|i| d.oneof_decl[i as usize].name().to_owned())
            };
            assert_eq!(
                oneof(o, of.oneof_index),
                oneof(s, f.oneof_index),
                "{name}.{} oneof",
                f.name()
            );
        }
        // Extensions may add fields, but never reuse a number of the
        // specification for another field.
        for of in &o.field {
            if let Some(f) = s.field.iter().find(|f| f.number() == of.number()) {
                assert_eq!(f.name(), of.name(), "{name}: number {} renamed", f.number());
            }
        }
    }

    // Enums and their values.
    let (oe, se) = (enums(&ours), enums(&spec));
    assert_eq!(se.len(), 4, "the specification has 4 enums");
    for (name, s) in &se {
        let o = oe
            .get(name)
            .unwrap_or_else(|| panic!("enum {name} missing"));
        for v in &s.value {
            let ov = o
                .value
                .iter()
                .find(|x| x.name() == v.name())
                .unwrap_or_else(|| panic!("{name}.{} missing", v.name()));
            assert_eq!(ov.number(), v.number(), "{name}.{}", v.name());
        }
    }
}

/// Generated Rust code and the descriptor agree (the service is usable).
#[test]
fn generated_service_paths() {
    assert_eq!(
        nxmesh_proto::pb::agent_service_server::SERVICE_NAME,
        "nxmesh.agent.v1.AgentService"
    );
}
