//! Wire-compatibility check of the API against a released baseline.
//!
//! The baseline is a `FileDescriptorSet` of the released `spacetime.miner.v1`, checked in at
//! `proto/api-baseline/spacetime.miner.v1.binpb`. [`breaking_changes`] lists every change
//! from the baseline to the current descriptors that an existing client or server would
//! notice on the wire (binary protobuf, or the JSON mapping grpc-gateway style clients use):
//!
//! * a message, enum, service or method that disappeared (or moved to another package);
//! * a field whose number is gone without being `reserved`, that got another number
//!   (renumbered: the same name under a new number), another name, another type (scalar
//!   kind, message or enum type), another label (singular / repeated / map), another
//!   presence (proto3 `optional`) or another `oneof`;
//! * an enum value whose number is gone or renamed;
//! * a method whose request or response type or streaming mode changed.
//!
//! Adding messages, fields, enum values, methods and services is compatible. After a release
//! that adds to the API, regenerate the baseline with
//! `cargo run -p spacetime-proto --example update_api_baseline`.

use std::collections::BTreeMap;

use prost_types::{
    field_descriptor_proto::{Label, Type},
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
};

/// Path of the checked-in baseline, relative to the `proto` crate.
pub const BASELINE_PATH: &str = "api-baseline/spacetime.miner.v1.binpb";

/// The current descriptors reduced to what the baseline keeps: the API's own files, without
/// source comments (they change freely and would bloat the baseline).
pub fn current_api() -> Result<FileDescriptorSet, prost::DecodeError> {
    let mut set: FileDescriptorSet = prost::Message::decode(crate::FILE_DESCRIPTOR_SET)?;
    set.file
        .retain(|f| f.package() == "spacetime.miner.v1" || f.name().starts_with("spacetime/"));
    for f in &mut set.file {
        f.source_code_info = None;
    }
    set.file.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(set)
}

/// A method's shape: (input type, output type, client streaming, server streaming).
type MethodShape = (String, String, bool, bool);

#[derive(Default)]
struct Index<'a> {
    messages: BTreeMap<String, &'a DescriptorProto>,
    enums: BTreeMap<String, &'a EnumDescriptorProto>,
    /// service name -> method name -> (input, output, client streaming, server streaming)
    services: BTreeMap<String, BTreeMap<String, MethodShape>>,
}

fn index_message<'a>(ix: &mut Index<'a>, prefix: &str, m: &'a DescriptorProto) {
    let name = format!("{prefix}.{}", m.name());
    for nested in &m.nested_type {
        index_message(ix, &name, nested);
    }
    for e in &m.enum_type {
        ix.enums.insert(format!("{name}.{}", e.name()), e);
    }
    ix.messages.insert(name, m);
}

fn index(set: &FileDescriptorSet) -> Index<'_> {
    let mut ix = Index::default();
    for f in &set.file {
        let prefix = if f.package().is_empty() {
            String::new()
        } else {
            format!(".{}", f.package())
        };
        for m in &f.message_type {
            index_message(&mut ix, &prefix, m);
        }
        for e in &f.enum_type {
            ix.enums.insert(format!("{prefix}.{}", e.name()), e);
        }
        for s in &f.service {
            let methods = s
                .method
                .iter()
                .map(|m| {
                    (
                        m.name().to_owned(),
                        (
                            m.input_type().to_owned(),
                            m.output_type().to_owned(),
                            m.client_streaming(),
                            m.server_streaming(),
                        ),
                    )
                })
                .collect();
            ix.services
                .insert(format!("{prefix}.{}", s.name()), methods);
        }
    }
    ix
}

/// How a field looks on the wire, in words (for messages).
fn shape(ix: &Index<'_>, f: &FieldDescriptorProto) -> String {
    let is_map = f.label() == Label::Repeated
        && f.r#type() == Type::Message
        && ix
            .messages
            .get(f.type_name())
            .and_then(|m| m.options.as_ref())
            .is_some_and(|o| o.map_entry());
    let label = if is_map {
        "map"
    } else if f.label() == Label::Repeated {
        "repeated"
    } else if f.proto3_optional() {
        "optional"
    } else {
        "singular"
    };
    let ty = match f.r#type() {
        Type::Message | Type::Enum | Type::Group => f.type_name().to_owned(),
        other => other
            .as_str_name()
            .trim_start_matches("TYPE_")
            .to_lowercase(),
    };
    format!("{label} {ty}")
}

fn reserved_number(m: &DescriptorProto, n: i32) -> bool {
    // Reserved ranges are [start, end) in descriptors.
    m.reserved_range
        .iter()
        .any(|r| r.start() <= n && n < r.end())
}

fn oneof_name(m: &DescriptorProto, f: &FieldDescriptorProto) -> Option<String> {
    if f.proto3_optional() {
        return None; // a synthetic oneof: presence is reported by `shape`
    }
    f.oneof_index
        .and_then(|i| m.oneof_decl.get(usize::try_from(i).ok()?))
        .map(|o| o.name().to_owned())
}

/// Every wire-incompatible change from `baseline` to `current`, one sentence each (empty
/// when the current API is a compatible extension of the baseline).
pub fn breaking_changes(baseline: &FileDescriptorSet, current: &FileDescriptorSet) -> Vec<String> {
    let (old, new) = (index(baseline), index(current));
    let mut out = Vec::new();
    for (name, om) in &old.messages {
        let Some(nm) = new.messages.get(name) else {
            out.push(format!("message {name} was removed"));
            continue;
        };
        for of in &om.field {
            let field = format!("{name}.{}", of.name());
            match nm.field.iter().find(|f| f.number() == of.number()) {
                None => {
                    if let Some(moved) = nm.field.iter().find(|f| f.name() == of.name()) {
                        out.push(format!(
                            "field {field} was renumbered from {} to {}",
                            of.number(),
                            moved.number()
                        ));
                    } else if !reserved_number(nm, of.number()) {
                        out.push(format!(
                            "field {field} = {} was removed without reserving its number",
                            of.number()
                        ));
                    }
                }
                Some(nf) => {
                    if nf.name() != of.name() {
                        out.push(format!(
                            "field {field} = {} was renamed to {} (breaks the JSON mapping)",
                            of.number(),
                            nf.name()
                        ));
                    }
                    let (os, ns) = (shape(&old, of), shape(&new, nf));
                    if os != ns {
                        out.push(format!(
                            "field {field} = {} changed type from `{os}` to `{ns}`",
                            of.number()
                        ));
                    }
                    let (oo, no) = (oneof_name(om, of), oneof_name(nm, nf));
                    if oo != no {
                        out.push(format!(
                            "field {field} = {} moved from oneof {:?} to oneof {:?}",
                            of.number(),
                            oo,
                            no
                        ));
                    }
                }
            }
        }
    }
    for (name, oe) in &old.enums {
        let Some(ne) = new.enums.get(name) else {
            out.push(format!("enum {name} was removed"));
            continue;
        };
        for ov in &oe.value {
            match ne.value.iter().find(|v| v.number() == ov.number()) {
                None => out.push(format!(
                    "enum value {name}.{} = {} was removed",
                    ov.name(),
                    ov.number()
                )),
                Some(nv) if nv.name() != ov.name() => out.push(format!(
                    "enum value {name}.{} = {} was renamed to {}",
                    ov.name(),
                    ov.number(),
                    nv.name()
                )),
                Some(_) => {}
            }
        }
    }
    for (name, om) in &old.services {
        let Some(nm) = new.services.get(name) else {
            out.push(format!("service {name} was removed"));
            continue;
        };
        for (method, o) in om {
            match nm.get(method) {
                None => out.push(format!("method {name}/{method} was removed")),
                Some(n) if n != o => out.push(format!(
                    "method {name}/{method} changed from {} to {}",
                    describe(o),
                    describe(n)
                )),
                Some(_) => {}
            }
        }
    }
    out
}

fn describe((input, output, cs, ss): &MethodShape) -> String {
    let s = |b: &bool| if *b { "stream " } else { "" };
    format!("({}{input}) returns ({}{output})", s(cs), s(ss))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{
        descriptor_proto::ReservedRange, EnumValueDescriptorProto, FileDescriptorProto,
        MethodDescriptorProto, ServiceDescriptorProto,
    };

    fn field(name: &str, number: i32, ty: Type) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(Label::Optional as i32),
            r#type: Some(ty as i32),
            ..Default::default()
        }
    }

    fn set(fields: Vec<FieldDescriptorProto>, methods: Vec<(&str, bool)>) -> FileDescriptorSet {
        FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("spacetime/x.proto".into()),
                package: Some("p".into()),
                message_type: vec![DescriptorProto {
                    name: Some("M".into()),
                    field: fields,
                    ..Default::default()
                }],
                enum_type: vec![EnumDescriptorProto {
                    name: Some("E".into()),
                    value: vec![EnumValueDescriptorProto {
                        name: Some("E_A".into()),
                        number: Some(0),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                service: vec![ServiceDescriptorProto {
                    name: Some("S".into()),
                    method: methods
                        .into_iter()
                        .map(|(n, stream)| MethodDescriptorProto {
                            name: Some(n.into()),
                            input_type: Some(".p.M".into()),
                            output_type: Some(".p.M".into()),
                            server_streaming: Some(stream),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn base() -> FileDescriptorSet {
        set(
            vec![field("a", 1, Type::Uint64), field("b", 2, Type::String)],
            vec![("Get", false)],
        )
    }

    #[test]
    fn additions_are_compatible() {
        let cur = set(
            vec![
                field("a", 1, Type::Uint64),
                field("b", 2, Type::String),
                field("c", 3, Type::Bool),
            ],
            vec![("Get", false), ("Watch", true)],
        );
        assert_eq!(breaking_changes(&base(), &cur), Vec::<String>::new());
    }

    #[test]
    fn each_breaking_change_is_reported() {
        let removed = set(vec![field("a", 1, Type::Uint64)], vec![("Get", false)]);
        assert_eq!(
            breaking_changes(&base(), &removed),
            ["field .p.M.b = 2 was removed without reserving its number"]
        );
        let mut reserved = removed.clone();
        reserved.file[0].message_type[0]
            .reserved_range
            .push(ReservedRange {
                start: Some(2),
                end: Some(3),
            });
        assert!(breaking_changes(&base(), &reserved).is_empty());

        let renumbered = set(
            vec![field("a", 1, Type::Uint64), field("b", 7, Type::String)],
            vec![("Get", false)],
        );
        assert_eq!(
            breaking_changes(&base(), &renumbered),
            ["field .p.M.b was renumbered from 2 to 7"]
        );
        let retyped = set(
            vec![field("a", 1, Type::Uint32), field("b", 2, Type::String)],
            vec![("Get", false)],
        );
        assert_eq!(
            breaking_changes(&base(), &retyped),
            ["field .p.M.a = 1 changed type from `singular uint64` to `singular uint32`"]
        );
        let mut repeated = base();
        repeated.file[0].message_type[0].field[1].label = Some(Label::Repeated as i32);
        assert_eq!(breaking_changes(&base(), &repeated).len(), 1);

        let method_gone = set(
            vec![field("a", 1, Type::Uint64), field("b", 2, Type::String)],
            vec![],
        );
        assert_eq!(
            breaking_changes(&base(), &method_gone),
            ["method .p.S/Get was removed"]
        );
        let now_streaming = set(
            vec![field("a", 1, Type::Uint64), field("b", 2, Type::String)],
            vec![("Get", true)],
        );
        assert_eq!(breaking_changes(&base(), &now_streaming).len(), 1);

        let mut enum_renamed = base();
        enum_renamed.file[0].enum_type[0].value[0].name = Some("E_B".into());
        assert_eq!(
            breaking_changes(&base(), &enum_renamed),
            ["enum value .p.E.E_A = 0 was renamed to E_B"]
        );
        let mut message_gone = base();
        message_gone.file[0].message_type.clear();
        assert!(breaking_changes(&base(), &message_gone)
            .iter()
            .any(|c| c == "message .p.M was removed"));
    }

    #[test]
    fn the_current_api_is_its_own_compatible_baseline() {
        let cur = current_api().unwrap();
        assert!(!cur.file.is_empty());
        assert!(cur.file.iter().all(|f| f.source_code_info.is_none()));
        assert!(breaking_changes(&cur, &cur).is_empty());
    }
}
