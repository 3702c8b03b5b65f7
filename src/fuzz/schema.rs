//! JSON Schema argument validation: a schema (the first line of the input)
//! compiled, and arguments (the rest) checked against it.

use serde_json::Value;

use super::Target;
use crate::tools::schema::ArgsSchema;
use crate::tools::ToolError;

pub const SCHEMA: Target = Target {
    name: "schema",
    dictionary: &[
        r#""type":"object""#,
        r#""type":"string""#,
        r#""type":["number","null"]"#,
        r#""properties":{"#,
        r#""required":["city"]"#,
        r#""additionalProperties":false"#,
        r#""minLength":1"#,
        r#""maxLength":4294967296"#,
        r#""minimum":-1e308"#,
        r#""multipleOf":1e-308"#,
        r#""pattern":"^a+$""#,
        r#""enum":[1,"a",null]"#,
        r#""oneOf":[{},{}]"#,
        r##""$ref":"#/$defs/x""##,
        r##""$ref":"#""##,
        r#""$ref":"http://example.com/s.json""#,
        r#""$ref":"file:///etc/passwd""#,
        r#""$defs":{"x":{"type":"integer"}}"#,
        r#""format":"email""#,
        r#""city":"London""#,
        "\n",
        "{",
        "}",
    ],
    max_len: 1024,
    generate: None,
    check: check_schema,
};

/// Compiling never panics; checking arguments never panics, answers the
/// same twice, and names at most a few failures. The schema's hash is
/// the same after serialise -> parse of the schema, and so is the verdict.
fn check_schema(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let (schema, args) = text.split_once('\n').unwrap_or((&text, "{}"));
    let Ok(schema) = serde_json::from_str::<Value>(schema) else {
        return;
    };
    let Ok(compiled) = ArgsSchema::compile(schema.clone()) else {
        return;
    };
    let Ok(args) = serde_json::from_str::<Value>(args) else {
        return;
    };
    let verdict = compiled.check(&args);
    if let Err(e) = &verdict {
        let ToolError::InvalidArgs(message) = e else {
            panic!("a failed check gave {e:?}, not invalid arguments");
        };
        assert!(message.matches("at /").count() <= 3, "{message}");
    }
    assert_eq!(
        format!("{:?}", compiled.check(&args)),
        format!("{verdict:?}")
    );
    let reread: Value = serde_json::from_str(&schema.to_string()).expect("parses");
    let again = ArgsSchema::compile(reread).expect("compiles again");
    assert_eq!(again.hash(), compiled.hash());
    assert_eq!(format!("{:?}", again.check(&args)), format!("{verdict:?}"));
}
