//! The `clean_output` scanner's speed on realistic pg_dump output, fed in the chunks the
//! server reads from pg_dump's pipe. Three inputs of ~100 MB, generated here:
//! - `data_dump`: a data dump (COPY blocks of a wide table): the path where nothing is dropped
//!   and COPY data is skipped by substring search;
//! - `schema_dump`: a schema dump of many tables, views, functions with dollar-quoted bodies,
//!   comments and Hasura triggers: the dirty path, where about a third of the lines are
//!   dropped and every line is looked at;
//! - `schema_dump_cleaned`: the same schema dump once cleaned: DDL with nothing left to drop.
//!
//! Under `cargo test` (criterion's test mode) the inputs are 1 MB, so that the suite stays fast.

use std::fmt::Write;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgdump_api::clean::{clean, Cleaner};

/// What the server reads from pg_dump's stdout at once.
const CHUNK: usize = 64 * 1024;

fn input_size() -> usize {
    if std::env::args().any(|arg| arg == "--bench") {
        100_000_000
    } else {
        1_000_000
    }
}

fn cleaner(c: &mut Criterion) {
    let size = input_size();
    let schema = schema_dump(size);
    let inputs = [
        ("data_dump", data_dump(size)),
        ("schema_dump_cleaned", clean(&schema)),
        ("schema_dump", schema),
    ];
    let mut group = c.benchmark_group("clean");
    group.sample_size(10);
    let mut out = Vec::with_capacity(2 * CHUNK);
    for (name, input) in &inputs {
        let kept = run(input, &mut out);
        eprintln!(
            "clean/{name}: {:.1} MB in, {:.1}% of the bytes dropped",
            input.len() as f64 / 1e6,
            100.0 * (1.0 - kept as f64 / input.len() as f64)
        );
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(*name, |b| b.iter(|| run(black_box(input), &mut out)));
    }
    group.finish();
}

/// Cleans `input` chunk by chunk, as the server does; returns how many bytes were kept.
fn run(input: &[u8], out: &mut Vec<u8>) -> usize {
    let mut cleaner = Cleaner::new();
    let mut kept = 0;
    for chunk in input.chunks(CHUNK) {
        out.clear();
        cleaner.feed(chunk, out);
        kept += out.len();
    }
    out.clear();
    cleaner.finish(out);
    kept + out.len()
}

/// A small deterministic generator (xorshift), so every run cleans the same bytes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize]))
            .collect()
    }
}

const HEADER: &str = "--
-- PostgreSQL database dump
--

\\restrict Yx3bM0r1f8QhR2cW9kPzL4tV6nD7sJ5a

-- Dumped from database version 17.6
-- Dumped by pg_dump version 17.6

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

";

const FOOTER: &str = "--
-- PostgreSQL database dump complete
--

\\unrestrict Yx3bM0r1f8QhR2cW9kPzL4tV6nD7sJ5a

";

/// A data-only dump of tables like `scripts/bench`'s `orders`: COPY text with tabs, escapes,
/// NULLs, numbers, timestamps and JSON.
fn data_dump(size: usize) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut dump = String::with_capacity(size + 4096);
    dump.push_str(HEADER);
    let per_table = size / 8;
    let mut table = 0;
    let mut id = 0u64;
    while dump.len() < size {
        table += 1;
        let _ = write!(
            dump,
            "--\n-- Data for Name: orders_{table}; Type: TABLE DATA; Schema: public; Owner: postgres\n\
             --\n\nCOPY public.orders_{table} (id, customer_id, status, quantity, unit_price, \
             discount, paid, created_at, shipped_on, sku, email, description, attributes) FROM stdin;\n"
        );
        let end = (dump.len() + per_table).min(size);
        while dump.len() < end {
            id += 1;
            let customer = rng.below(1_000_003);
            let status = ["pending", "paid", "shipped", "delivered", "refunded"][id as usize % 5];
            let discount = match rng.below(4) {
                0 => "\\N".to_owned(),
                n => format!("0.{n}5"),
            };
            let _ = write!(
                dump,
                "{id}\t{customer}\t{status}\t{}\t{}.{:02}\t{discount}\t{}\t2021-{:02}-{:02} {:02}:{:02}:{:02}+00\t",
                1 + rng.below(17),
                rng.below(1000),
                rng.below(100),
                if rng.below(3) == 0 { 'f' } else { 't' },
                1 + rng.below(12),
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60),
            );
            match rng.below(5) {
                0 | 1 => dump.push_str("\\N"),
                _ => {
                    let _ = write!(
                        dump,
                        "2021-{:02}-{:02}",
                        1 + rng.below(12),
                        1 + rng.below(28)
                    );
                }
            }
            let _ = write!(
                dump,
                "\tSKU-{:07}\tcustomer{customer}@example.com\t",
                rng.below(1_000_000)
            );
            match rng.below(10) {
                0 => dump.push_str("\\N"),
                1 => {
                    let _ = write!(dump, "Gift order\\nline two\\\\{}", rng.hex(12));
                }
                _ => {
                    let _ = write!(dump, "Order {id}:\\t{} {}", rng.hex(32), rng.hex(32));
                }
            }
            if id % 2 == 0 {
                let _ = writeln!(
                    dump,
                    "\t{{\"gift\": {}, \"tags\": [\"t{}\", \"t{}\"], \"channel\": \"{}\"}}",
                    rng.below(7) == 0,
                    rng.below(13),
                    rng.below(29),
                    ["web", "app", "store"][rng.below(3) as usize]
                );
            } else {
                dump.push_str("\t\\N\n");
            }
        }
        dump.push_str("\\.\n\n\n");
    }
    dump.push_str(FOOTER);
    dump.into_bytes()
}

/// A schema-only dump: per table a function with a dollar-quoted body, the table with its
/// sequence, comment, view, keys and index, and for some a Hasura event trigger, each object
/// under pg_dump's comment header.
fn schema_dump(size: usize) -> Vec<u8> {
    let mut dump = String::with_capacity(size + 8192);
    dump.push_str(HEADER);
    dump.push_str(
        "--\n-- Name: app; Type: SCHEMA; Schema: -; Owner: postgres\n--\n\nCREATE SCHEMA app;\n\n\n\
         ALTER SCHEMA app OWNER TO postgres;\n\n",
    );
    let mut i = 0;
    while dump.len() < size {
        i += 1;
        let parent = (i - 1usize).max(1);
        let _ = write!(
            dump,
            "--
-- Name: f{i}(integer); Type: FUNCTION; Schema: app; Owner: postgres
--

CREATE FUNCTION app.f{i}(n integer) RETURNS integer
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- table {i}: keep the blank line below

    RETURN n + {i}; -- it's 'quoted'
END
$$;


ALTER FUNCTION app.f{i}(n integer) OWNER TO postgres;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: t{i}; Type: TABLE; Schema: app; Owner: postgres
--

CREATE TABLE app.t{i} (
    id integer NOT NULL,
    parent_id integer,
    code text NOT NULL,
    qty integer DEFAULT 0 NOT NULL,
    price numeric(10,2),
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    note text DEFAULT 'n/a'::text,
    CONSTRAINT t{i}_qty_check CHECK ((qty >= 0))
);


ALTER TABLE app.t{i} OWNER TO postgres;

--
-- Name: TABLE t{i}; Type: COMMENT; Schema: app; Owner: postgres
--

COMMENT ON TABLE app.t{i} IS 'Table number {i}; it''s a test';


--
-- Name: t{i}_id_seq; Type: SEQUENCE; Schema: app; Owner: postgres
--

CREATE SEQUENCE app.t{i}_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


ALTER SEQUENCE app.t{i}_id_seq OWNER TO postgres;

--
-- Name: t{i}_id_seq; Type: SEQUENCE OWNED BY; Schema: app; Owner: postgres
--

ALTER SEQUENCE app.t{i}_id_seq OWNED BY app.t{i}.id;


--
-- Name: v{i}; Type: VIEW; Schema: app; Owner: postgres
--

CREATE VIEW app.v{i} AS
 SELECT id,
    code,
    qty
   FROM app.t{i}
  WHERE (qty > 0);


ALTER VIEW app.v{i} OWNER TO postgres;

--
-- Name: t{i} id; Type: DEFAULT; Schema: app; Owner: postgres
--

ALTER TABLE ONLY app.t{i} ALTER COLUMN id SET DEFAULT nextval('app.t{i}_id_seq'::regclass);


--
-- Name: t{i} t{i}_code_key; Type: CONSTRAINT; Schema: app; Owner: postgres
--

ALTER TABLE ONLY app.t{i}
    ADD CONSTRAINT t{i}_code_key UNIQUE (code);


--
-- Name: t{i} t{i}_pkey; Type: CONSTRAINT; Schema: app; Owner: postgres
--

ALTER TABLE ONLY app.t{i}
    ADD CONSTRAINT t{i}_pkey PRIMARY KEY (id);


--
-- Name: t{i}_created_at_idx; Type: INDEX; Schema: app; Owner: postgres
--

CREATE INDEX t{i}_created_at_idx ON app.t{i} USING btree (created_at);


--
-- Name: t{i} t{i}_parent_id_fkey; Type: FK CONSTRAINT; Schema: app; Owner: postgres
--

ALTER TABLE ONLY app.t{i}
    ADD CONSTRAINT t{i}_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES app.t{parent}(id) ON DELETE CASCADE;


"
        );
        if i % 10 == 0 {
            let _ = write!(
                dump,
                "--
-- Name: t{i} notify_hasura_t{i}_INSERT; Type: TRIGGER; Schema: app; Owner: postgres
--

CREATE TRIGGER \"notify_hasura_t{i}_INSERT\" AFTER INSERT ON app.t{i} FOR EACH ROW EXECUTE FUNCTION hdb_catalog.\"notify_hasura_t{i}_INSERT\"();


"
            );
        }
    }
    dump.push_str(FOOTER);
    dump.into_bytes()
}

criterion_group!(benches, cleaner);
criterion_main!(benches);
