//! One JSON object per line on stderr (CloudWatch Logs). Callers pass only identifiers, phases
//! and error texts — never payloads, keys or user data.

fn line(level: &str, scope: &str, msg: &str, fields: &[(&str, &str)]) {
    let mut m = serde_json::Map::new();
    m.insert("level".into(), level.into());
    m.insert("scope".into(), scope.into());
    m.insert("msg".into(), msg.into());
    for (k, v) in fields {
        m.insert((*k).into(), (*v).into());
    }
    eprintln!("{}", serde_json::Value::Object(m));
}

pub fn info(scope: &str, msg: &str, fields: &[(&str, &str)]) {
    line("info", scope, msg, fields);
}

pub fn error(scope: &str, msg: &str, fields: &[(&str, &str)]) {
    line("error", scope, msg, fields);
}
