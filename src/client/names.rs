//! Names, not patterns. pg_dump reads `--schema` and `--table` as patterns: it folds
//! unquoted letters to lower case and treats `*`, `?` and `.` as wildcards and separators, so
//! `MyTable` or `sales.Orders` silently match nothing, or something else. The client takes
//! plain names instead and sends each part fully inside double quotes, which makes pg_dump
//! match it literally.
//!
//! Syntax of a name given on the command line:
//! - `schema.table` splits at the first unquoted dot; without a dot the name is a table in
//!   pg_dump's default search path;
//! - a part may be written SQL-quoted, `"my.schema"."Odd""Name"`, to hold dots or double
//!   quotes (a quote inside is doubled); an unquoted part is taken as it is, case included,
//!   and may not contain a double quote.
//!
//! Pure functions, no I/O.

use std::fmt;

/// Why a name could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameError {
    #[error("empty name")]
    Empty,
    #[error("a quoted name is not closed (write a double quote inside it as \"\")")]
    Unterminated,
    #[error("unexpected text after the closing double quote: {0:?}")]
    AfterQuote(String),
    #[error("a double quote inside an unquoted name (quote the whole part: \"a\"\"b\")")]
    StrayQuote,
}

/// A schema name, read from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaName(pub String);

/// A table name, possibly schema-qualified, read from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableName {
    pub schema: Option<String>,
    pub table: String,
}

impl SchemaName {
    /// Reads one name: `"…"` quoted, or taken literally (dots included).
    pub(crate) fn parse(input: &str) -> Result<SchemaName, NameError> {
        let (name, rest) = part(input, false)?;
        match rest {
            "" => Ok(SchemaName(name)),
            rest => Err(NameError::AfterQuote(rest.to_owned())),
        }
    }

    /// Reads a comma-separated list, as the Hasura CLI reads `--schema a,b`; a comma inside
    /// a double-quoted name is part of it (`"a,b"`).
    pub(crate) fn parse_list(input: &str) -> Result<Vec<SchemaName>, NameError> {
        let mut names = Vec::new();
        let mut quoted = false;
        let mut start = 0;
        for (at, c) in input.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    names.push(SchemaName::parse(&input[start..at])?);
                    start = at + 1;
                }
                _ => {}
            }
        }
        names.push(SchemaName::parse(&input[start..])?);
        Ok(names)
    }

    /// The pg_dump pattern that matches exactly this schema.
    pub(crate) fn pattern(&self) -> String {
        quote(&self.0)
    }
}

impl TableName {
    /// Reads `table`, `schema.table`, with either part optionally `"…"` quoted.
    pub(crate) fn parse(input: &str) -> Result<TableName, NameError> {
        let (first, rest) = part(input, true)?;
        let Some(rest) = rest.strip_prefix('.') else {
            return match rest {
                "" => Ok(TableName {
                    schema: None,
                    table: first,
                }),
                rest => Err(NameError::AfterQuote(rest.to_owned())),
            };
        };
        let (table, rest) = part(rest, false)?;
        match rest {
            "" => Ok(TableName {
                schema: Some(first),
                table,
            }),
            rest => Err(NameError::AfterQuote(rest.to_owned())),
        }
    }

    /// The pg_dump pattern that matches exactly this table.
    pub(crate) fn pattern(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(&self.table)),
            None => quote(&self.table),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern())
    }
}

/// Reads one part from the start of `input` and returns it with what follows. A quoted part
/// ends at its closing quote; an unquoted one at the first dot when `stop_at_dot`, else at
/// the end.
fn part(input: &str, stop_at_dot: bool) -> Result<(String, &str), NameError> {
    if let Some(quoted) = input.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((at, c)) = chars.next() {
            if c != '"' {
                name.push(c);
                continue;
            }
            if quoted[at + 1..].starts_with('"') {
                chars.next();
                name.push('"');
                continue;
            }
            if name.is_empty() {
                return Err(NameError::Empty);
            }
            return Ok((name, &quoted[at + 1..]));
        }
        return Err(NameError::Unterminated);
    }
    let end = match stop_at_dot {
        true => input.find('.').unwrap_or(input.len()),
        false => input.len(),
    };
    let name = &input[..end];
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.contains('"') {
        return Err(NameError::StrayQuote);
    }
    Ok((name.to_owned(), &input[end..]))
}

/// One name as a pg_dump pattern that matches only itself: inside double quotes, pg_dump
/// keeps case and takes `*`, `?`, `.` and regular-expression characters literally; a double
/// quote is written twice.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(input: &str) -> String {
        TableName::parse(input)
            .unwrap_or_else(|err| panic!("{input:?}: {err}"))
            .pattern()
    }

    #[test]
    fn table_names_become_exact_patterns() {
        for (input, pattern) in [
            ("users", r#""users""#),
            ("MyTable", r#""MyTable""#),
            ("sales.Orders", r#""sales"."Orders""#),
            ("Sales.orders", r#""Sales"."orders""#),
            ("a.b.c", r#""a"."b.c""#),
            ("*", r#""*""#),
            ("we?rd$", r#""we?rd$""#),
            ("with space", r#""with space""#),
            ("naïve", r#""naïve""#),
            (r#""my.table""#, r#""my.table""#),
            (r#""my.schema"."Odd""Name""#, r#""my.schema"."Odd""Name""#),
            (r#"public."a.b""#, r#""public"."a.b""#),
            (r#""Sales".Orders"#, r#""Sales"."Orders""#),
            (r#""""""#, r#""""""#),
            (r#""x""y""#, r#""x""y""#),
        ] {
            assert_eq!(table(input), pattern, "{input:?}");
        }
    }

    #[test]
    fn table_name_parts() {
        assert_eq!(
            TableName::parse(r#""my.schema"."Odd""Name""#).unwrap(),
            TableName {
                schema: Some("my.schema".into()),
                table: "Odd\"Name".into()
            }
        );
        assert_eq!(
            TableName::parse("Orders").unwrap(),
            TableName {
                schema: None,
                table: "Orders".into()
            }
        );
    }

    #[test]
    fn malformed_table_names_are_refused() {
        for (input, error) in [
            ("", NameError::Empty),
            (".t", NameError::Empty),
            ("s.", NameError::Empty),
            (r#""""#, NameError::Empty),
            (r#"s."""#, NameError::Empty),
            (r#""open"#, NameError::Unterminated),
            (r#""a""b"#, NameError::Unterminated),
            (r#""a"b"#, NameError::AfterQuote("b".into())),
            (r#"s."t"x"#, NameError::AfterQuote("x".into())),
            (r#"a"b"#, NameError::StrayQuote),
            (r#"s.t"x"#, NameError::StrayQuote),
        ] {
            assert_eq!(TableName::parse(input), Err(error), "{input:?}");
        }
    }

    #[test]
    fn schema_names_are_one_part() {
        for (input, pattern) in [
            ("public", r#""public""#),
            ("Sales", r#""Sales""#),
            ("my.schema", r#""my.schema""#),
            (r#""my.schema""#, r#""my.schema""#),
            (r#""a""b""#, r#""a""b""#),
        ] {
            assert_eq!(SchemaName::parse(input).unwrap().pattern(), pattern);
        }
        assert_eq!(SchemaName::parse(""), Err(NameError::Empty));
        assert_eq!(
            SchemaName::parse(r#""a".b"#),
            Err(NameError::AfterQuote(".b".into()))
        );
    }

    #[test]
    fn schema_lists_split_at_commas_outside_quotes() {
        let list = |input: &str| -> Vec<String> {
            SchemaName::parse_list(input)
                .unwrap()
                .into_iter()
                .map(|name| name.0)
                .collect()
        };
        assert_eq!(list("public"), ["public"]);
        assert_eq!(list("public,Sales"), ["public", "Sales"]);
        assert_eq!(list(r#""a,b",c"#), ["a,b", "c"]);
        assert_eq!(list(r#""x"",y""#), ["x\",y"]);
        assert_eq!(SchemaName::parse_list("a,"), Err(NameError::Empty));
        assert_eq!(SchemaName::parse_list(",a"), Err(NameError::Empty));
    }

    /// The pattern reads back, through the same syntax, as the name it came from.
    #[test]
    fn patterns_read_back_as_their_names() {
        for name in ["x", "X.y", "a\"b", "\"", "..", "*.?", " s p "] {
            let table = TableName {
                schema: Some(name.to_owned()),
                table: name.to_owned(),
            };
            assert_eq!(TableName::parse(&table.pattern()).unwrap(), table);
        }
    }
}
