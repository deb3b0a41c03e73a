//! glibc's getopt_long over the request's `opts`, one option at a time: bundled short options,
//! attached and separate values, `--name=value`, abbreviations and `--`.

use super::error::{error, quote, OptsError};
use super::table::{list, lookup_long, Id, LongOpt, LONG_OPTIONS};

/// One option as getopt_long returns it.
pub(super) struct Opt<'a> {
    /// The element of `opts` that holds the option (not a separate value).
    pub(super) index: usize,
    /// The option for messages: as written, then its full name if that differs.
    pub(super) name: String,
    /// The entry matched; for a short option, the first entry for its letter.
    pub(super) entry: &'static LongOpt,
    pub(super) value: Option<&'a str>,
}

/// glibc's getopt_long over `opts`, one option at a time. pg_dump's only positional argument is
/// the database, which `source` chooses, so a positional argument is an error.
pub(super) struct Tokens<'a> {
    opts: &'a [String],
    /// Index of the next element to read.
    next: usize,
    /// The unread rest of a bundle of short options such as `-sOx`, and its element's index.
    bundle: Option<(usize, &'a str)>,
    /// Set by `--`: everything after it is positional.
    options_ended: bool,
}

impl<'a> Tokens<'a> {
    pub(super) fn new(opts: &'a [String]) -> Self {
        Tokens {
            opts,
            next: 0,
            bundle: None,
            options_ended: false,
        }
    }

    /// One short option; `rest` is what follows its letter in its element.
    fn short(&mut self, index: usize, letter: char, rest: &'a str) -> Result<Opt<'a>, OptsError> {
        let written = format!("-{letter}");
        // pg_dump's optstring also has an `X`, which its switch fails as unknown.
        let Some(entry) = LONG_OPTIONS.iter().find(|o| o.id == Id::Short(letter)) else {
            return Err(error(
                index,
                format!("unrecognized option {}", quote(&written)),
            ));
        };
        let name = describe(&written, entry);
        let value = match (entry.takes_arg, rest.is_empty()) {
            (false, true) => None,
            (false, false) => {
                self.bundle = Some((index, rest));
                None
            }
            // The rest of the element is the argument: `-npublic`, `-Onpublic`.
            (true, false) => Some(rest),
            (true, true) => Some(self.take_value(index, &name)?),
        };
        Ok(Opt {
            index,
            name,
            entry,
            value,
        })
    }

    /// One long option; `body` is its element without the leading `--`.
    fn long(&mut self, index: usize, body: &'a str) -> Result<Opt<'a>, OptsError> {
        let (given, attached) = match body.split_once('=') {
            Some((given, value)) => (given, Some(value)),
            None => (body, None),
        };
        let written = format!("--{given}");
        let entry = lookup_long(given).map_err(|candidates| {
            let message = match candidates.as_slice() {
                [] => format!("unrecognized option {}", quote(&written)),
                _ => format!(
                    "option {} is ambiguous ({})",
                    quote(&written),
                    list(&candidates)
                ),
            };
            error(index, message)
        })?;
        let name = describe(&written, entry);
        let value = match (entry.takes_arg, attached) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(error(
                    index,
                    format!("option {name} does not take an argument"),
                ));
            }
            (true, Some(value)) => Some(value),
            (true, None) => Some(self.take_value(index, &name)?),
        };
        Ok(Opt {
            index,
            name,
            entry,
            value,
        })
    }

    /// The next element, whatever it holds (`-n -x` is schema "-x"), as an option's argument.
    fn take_value(&mut self, index: usize, name: &str) -> Result<&'a str, OptsError> {
        let Some(value) = self.opts.get(self.next) else {
            return Err(error(index, format!("option {name} requires an argument")));
        };
        self.next += 1;
        Ok(value)
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Result<Opt<'a>, OptsError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((index, bundle)) = self.bundle.take() {
                let mut chars = bundle.chars();
                if let Some(letter) = chars.next() {
                    return Some(self.short(index, letter, chars.as_str()));
                }
            }
            let index = self.next;
            let arg = self.opts.get(index)?;
            self.next += 1;
            // A lone `-` is positional; glibc permutes, so one may come anywhere.
            let body = match arg.strip_prefix('-') {
                Some(body) if !self.options_ended && !body.is_empty() => body,
                _ => {
                    let why = "the database is chosen by \"source\"";
                    let message =
                        format!("positional argument {} is not allowed: {why}", quote(arg));
                    return Some(Err(error(index, message)));
                }
            };
            if body == "-" {
                self.options_ended = true;
            } else if let Some(body) = body.strip_prefix('-') {
                return Some(self.long(index, body));
            } else {
                // One or more short options, read at the top of the loop.
                self.bundle = Some((index, body));
            }
        }
    }
}

/// Names an option for a message: as written, plus its full name when that differs.
pub(super) fn describe(written: &str, entry: &LongOpt) -> String {
    let full = format!("--{}", entry.name);
    if written == full {
        quote(written)
    } else {
        format!("{} ({full})", quote(written))
    }
}
