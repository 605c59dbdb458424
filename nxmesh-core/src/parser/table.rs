//! The versioned nginx directive table, generated at build time by `build.rs`
//! from nginx's own `ngx_command_t` tables (`data/nginx-directives.json`) for
//! releases 1.22.1 to 1.31.4 plus lua-nginx-module. Nothing here is hand-typed:
//! the generator and the linter reuse it to ask which versions know a
//! directive, where it is allowed and how many arguments it takes.

/// One version's directives: name and registrations, sorted by name.
type Table = &'static [(&'static str, &'static [Usage])];

include!(concat!(env!("OUT_DIR"), "/directives.rs"));

/// One registration of a directive (one `ngx_command_t` entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Context bits (`CTX_*` constants of this module).
    pub contexts: u32,
    /// Argument bits with nginx's values: `NOARGS`, `TAKE1`..`TAKE7`, `BLOCK`,
    /// `FLAG`, `ANY`, `ONE_MORE`, `TWO_MORE`.
    pub args: u32,
    /// The nginx source file that registers it.
    pub module: &'static str,
}

/// `NGX_MAIN_CONF`: the main (top-level) context.
pub const CTX_MAIN: u32 = 1 << 0;
/// `NGX_DIRECT_CONF`: set together with `CTX_MAIN` for simple main directives.
pub const CTX_DIRECT: u32 = 1 << 1;
/// `NGX_ANY_CONF`: allowed in every context.
pub const CTX_ANY: u32 = 1 << 2;
/// `NGX_EVENT_CONF`: `events { }`.
pub const CTX_EVENT: u32 = 1 << 3;
/// `NGX_MAIL_MAIN_CONF`: `mail { }`.
pub const CTX_MAIL_MAIN: u32 = 1 << 4;
/// `NGX_MAIL_SRV_CONF`: `mail { server { } }`.
pub const CTX_MAIL_SRV: u32 = 1 << 5;
/// `NGX_STREAM_MAIN_CONF`: `stream { }`.
pub const CTX_STREAM_MAIN: u32 = 1 << 6;
/// `NGX_STREAM_SRV_CONF`: `stream { server { } }`.
pub const CTX_STREAM_SRV: u32 = 1 << 7;
/// `NGX_STREAM_UPS_CONF`: `stream { upstream { } }`.
pub const CTX_STREAM_UPS: u32 = 1 << 8;
/// `NGX_HTTP_MAIN_CONF`: `http { }`.
pub const CTX_HTTP_MAIN: u32 = 1 << 9;
/// `NGX_HTTP_SRV_CONF`: `http { server { } }`.
pub const CTX_HTTP_SRV: u32 = 1 << 10;
/// `NGX_HTTP_LOC_CONF`: `location { }`, nested or not.
pub const CTX_HTTP_LOC: u32 = 1 << 11;
/// `NGX_HTTP_UPS_CONF`: `http { upstream { } }`.
pub const CTX_HTTP_UPS: u32 = 1 << 12;
/// `NGX_HTTP_SIF_CONF`: `if { }` inside `server`.
pub const CTX_HTTP_SIF: u32 = 1 << 13;
/// `NGX_HTTP_LIF_CONF`: `if { }` inside `location`.
pub const CTX_HTTP_LIF: u32 = 1 << 14;
/// `NGX_HTTP_LMT_CONF`: `limit_except { }`.
pub const CTX_HTTP_LMT: u32 = 1 << 15;

/// `NGX_CONF_NOARGS`.
pub const NOARGS: u32 = 0x1;
/// `NGX_CONF_BLOCK`: the directive takes a `{ }` block.
pub const BLOCK: u32 = 0x100;
/// `NGX_CONF_FLAG`: one argument, `on` or `off`.
pub const FLAG: u32 = 0x200;
/// `NGX_CONF_ANY`: any number of arguments.
pub const ANY: u32 = 0x400;
/// `NGX_CONF_1MORE`: one or more arguments.
pub const ONE_MORE: u32 = 0x800;
/// `NGX_CONF_2MORE`: two or more arguments.
pub const TWO_MORE: u32 = 0x1000;
/// `NGX_CONF_MAX_ARGS`: directive name plus at most 7 arguments for `TAKEn`.
const MAX_ARGS: usize = 8;

/// Why a statement does not fit a [`Usage`], worded as `ngx_conf_handler`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// `directive "x" is not terminated by ";"`.
    NotTerminated,
    /// `directive "x" has no opening "{"`.
    NoOpeningBrace,
    /// `invalid number of arguments in "x" directive`.
    ArgCount,
}

impl Usage {
    /// Whether this usage is allowed in the context with bit `ctx`.
    pub fn allowed_in(&self, ctx: u32) -> bool {
        self.contexts & (ctx | CTX_ANY) != 0
    }

    /// Checks a statement with `nargs` arguments (not counting the name)
    /// ending in `{` (`has_block`) or `;`, as `ngx_conf_handler` does.
    pub fn check(&self, nargs: usize, has_block: bool) -> Result<(), Mismatch> {
        if self.args & BLOCK == 0 && has_block {
            return Err(Mismatch::NotTerminated);
        }
        if self.args & BLOCK != 0 && !has_block {
            return Err(Mismatch::NoOpeningBrace);
        }
        let n = nargs + 1;
        let ok = if self.args & ANY != 0 {
            true
        } else if self.args & FLAG != 0 {
            n == 2
        } else if self.args & ONE_MORE != 0 {
            n >= 2
        } else if self.args & TWO_MORE != 0 {
            n >= 3
        } else if n > MAX_ARGS {
            false
        } else {
            self.args & (1 << (n - 1)) != 0
        };
        if ok { Ok(()) } else { Err(Mismatch::ArgCount) }
    }
}

/// The directives known to one nginx release, optionally with
/// lua-nginx-module's.
#[derive(Clone, Copy, Debug)]
pub struct DirectiveTable {
    version: &'static str,
    nginx: &'static [(&'static str, &'static [Usage])],
    lua: bool,
}

impl DirectiveTable {
    /// The table of nginx `version` (e.g. `"1.26.3"`), if it is one of
    /// [`versions`]; `lua` adds lua-nginx-module's directives.
    pub fn new(version: &str, lua: bool) -> Option<Self> {
        VERSIONS
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(version, nginx)| Self {
                version,
                nginx,
                lua,
            })
    }

    /// The newest known nginx release, with lua-nginx-module.
    pub fn latest() -> Self {
        let (version, nginx) = VERSIONS[VERSIONS.len() - 1];
        Self {
            version,
            nginx,
            lua: true,
        }
    }

    /// The nginx version of this table.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Every registration of directive `name`, or `None` if it is unknown.
    pub fn get(&self, name: &str) -> Option<&'static [Usage]> {
        lookup(self.nginx, name).or_else(|| {
            if self.lua {
                lookup(LUA_NGINX_MODULE, name)
            } else {
                None
            }
        })
    }

    /// Directive names of this table, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        let lua: &'static [(&'static str, &'static [Usage])] =
            if self.lua { LUA_NGINX_MODULE } else { &[] };
        self.nginx.iter().chain(lua).map(|(name, _)| *name)
    }
}

fn lookup(
    table: &'static [(&'static str, &'static [Usage])],
    name: &str,
) -> Option<&'static [Usage]> {
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table[i].1)
}

/// The nginx releases the table covers, oldest first.
pub fn versions() -> impl Iterator<Item = &'static str> {
    VERSIONS.iter().map(|(v, _)| *v)
}

/// The nginx releases that know directive `name` (lua-nginx-module's
/// directives are not counted: they depend on the module, not the release).
pub fn versions_with(name: &str) -> Vec<&'static str> {
    VERSIONS
        .iter()
        .filter(|(_, table)| lookup(table, name).is_some())
        .map(|(v, _)| *v)
        .collect()
}

/// lua-nginx-module's directives.
pub fn lua_directive(name: &str) -> Option<&'static [Usage]> {
    lookup(LUA_NGINX_MODULE, name)
}

/// Whether `name` is one of lua-nginx-module's `*_by_lua_block` directives,
/// whose block is Lua code rather than nginx directives.
pub fn is_lua_block(name: &str) -> bool {
    name.ends_with("_by_lua_block") && lookup(LUA_NGINX_MODULE, name).is_some()
}
