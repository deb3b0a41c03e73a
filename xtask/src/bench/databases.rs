//! The databases: (a) one wide table of data, (b) a large catalog, (c) a tiny schema.

use anyhow::{Context, Result};
use xtask::Cluster;

use super::{dump_size, Settings};
use crate::step;

/// (a) one wide table of data, (b) a large catalog, (c) a tiny schema.
pub(super) async fn create_databases(cluster: &Cluster, settings: &Settings) -> Result<()> {
    step(&format!(
        "creating the data database (~{} MB of dump in one wide table)",
        settings.data_mb
    ));
    cluster.create_database("bench_data", DATA_SCHEMA).await?;
    cluster
        .create_database("bench_catalog", "CREATE SCHEMA app")
        .await?;
    cluster.create_database("bench_tiny", TINY_SCHEMA).await?;
    let data = cluster.connect("bench_data").await?;
    // Size the table from a sample: dump bytes per row, then fill up to the requested size.
    let sample = dump_size(cluster, "bench_data", &["--data-only"])?;
    let rows = ((settings.data_mb as f64 * 1e6 / (sample as f64 / 20000.0)) as u64).max(20000);
    let batch = 500_000;
    for lo in (20001..=rows).step_by(batch) {
        let hi = (lo + batch as u64 - 1).min(rows);
        eprintln!("    rows {lo}..{hi} of {rows}");
        data.batch_execute(&format!("SELECT public.bench_fill({lo}, {hi})"))
            .await?;
    }
    for sql in [
        "DROP FUNCTION public.bench_fill",
        "ALTER TABLE public.orders ADD PRIMARY KEY (id)",
        "VACUUM (FREEZE, ANALYZE) public.orders",
    ] {
        data.batch_execute(sql).await.context(sql)?;
    }

    step(&format!(
        "creating the large catalog ({} tables, each with a sequence, keys, a check, an index, a view and a function)",
        settings.tables
    ));
    let catalog = cluster.connect("bench_catalog").await?;
    for lo in (1..=settings.tables).step_by(250) {
        let hi = (lo + 249).min(settings.tables);
        let sql = CATALOG_BATCH
            .replace("{lo}", &lo.to_string())
            .replace("{hi}", &hi.to_string());
        catalog.batch_execute(&sql).await.context("catalog")?;
    }
    catalog.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}

/// The data table and the function that fills it.
const DATA_SCHEMA: &str = r#"
CREATE TABLE public.orders (
    id bigint NOT NULL,
    customer_id integer NOT NULL,
    status text NOT NULL,
    quantity integer NOT NULL,
    unit_price numeric(10,2) NOT NULL,
    discount real,
    paid boolean NOT NULL,
    created_at timestamp with time zone NOT NULL,
    shipped_on date,
    sku text NOT NULL,
    email text NOT NULL,
    description text,
    attributes jsonb
);
CREATE FUNCTION public.bench_fill(lo bigint, hi bigint) RETURNS void LANGUAGE sql AS $$
INSERT INTO public.orders
SELECT g,
       (g * 7919) % 1000003,
       (ARRAY['pending', 'paid', 'shipped', 'delivered', 'refunded'])[1 + g % 5],
       1 + g % 17,
       round(((g * 31) % 100000) / 100.0, 2),
       CASE WHEN g % 4 <> 0 THEN (g % 30) / 100.0 END,
       g % 3 <> 0,
       timestamptz '2021-01-01 00:00:00+00' + g * interval '7 seconds',
       CASE WHEN g % 5 >= 2 THEN date '2021-01-01' + (g / 20000)::int END,
       'SKU-' || lpad(((g * 104729) % 1000000)::text, 7, '0'),
       'customer' || (g * 7919) % 1000003 || '@example.com',
       CASE WHEN g % 10 <> 0
            THEN 'Order ' || g || E':\t' || md5(g::text) || ' ' || md5((g * 3)::text) END,
       CASE WHEN g % 2 = 0 THEN jsonb_build_object(
           'gift', g % 7 = 0,
           'channel', (ARRAY['web', 'app', 'store'])[1 + g % 3],
           'tags', jsonb_build_array('t' || g % 13, 't' || g % 29)) END
FROM generate_series(lo, hi) AS g
$$;
SELECT public.bench_fill(1, 20000);
"#;

/// Tables {lo} to {hi} of the large catalog.
const CATALOG_BATCH: &str = r#"
DO $do$
BEGIN
    FOR i IN {lo}..{hi} LOOP
        EXECUTE format($f$
            CREATE TABLE app.t%1$s (
                id serial PRIMARY KEY,
                parent_id integer REFERENCES app.t%2$s (id) ON DELETE CASCADE,
                code text NOT NULL UNIQUE,
                qty integer NOT NULL DEFAULT 0 CHECK (qty >= 0),
                price numeric(10,2),
                created_at timestamp with time zone NOT NULL DEFAULT now(),
                note text
            );
            CREATE INDEX t%1$s_created_at_idx ON app.t%1$s (created_at);
            COMMENT ON TABLE app.t%1$s IS 'Table number %1$s';
            CREATE VIEW app.v%1$s AS SELECT id, code, qty FROM app.t%1$s WHERE qty > 0;
            CREATE FUNCTION app.f%1$s(n integer) RETURNS integer LANGUAGE plpgsql AS $b$
            BEGIN
                -- table %1$s

                RETURN n + %1$s;
            END
            $b$;
        $f$, i, greatest(i - 1, 1));
    END LOOP;
END
$do$;
"#;

/// The tiny schema a `hasura migrate create` dumps.
const TINY_SCHEMA: &str = r#"
CREATE TABLE public.authors (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.articles (
    id serial PRIMARY KEY,
    author_id integer NOT NULL REFERENCES public.authors (id),
    title text NOT NULL,
    body text
);
CREATE VIEW public.article_titles AS
    SELECT a.title, au.name FROM public.articles a JOIN public.authors au ON au.id = a.author_id;
"#;
