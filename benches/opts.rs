//! The pg_dump option parser's cost per request (`opts::parse`: getopt_long rules, the
//! allow-list, canonical re-emission), for what clients really send.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgdump_api::opts;

fn strings(opts: &[&str]) -> Vec<String> {
    opts.iter().map(|&opt| opt.to_owned()).collect()
}

fn parser(c: &mut Criterion) {
    let many_tables: Vec<String> = (0..1000)
        .flat_map(|i| ["--table".to_owned(), format!("public.table_{i}")])
        .collect();
    let requests = [
        // `hasura migrate create --from-server`
        (
            "migrate_create",
            strings(&["-O", "-x", "--schema-only", "--schema", "public"]),
            true,
        ),
        // `hasura seed create --from-table authors --from-table articles`
        (
            "seed_create",
            strings(&[
                "--no-owner",
                "--no-acl",
                "--data-only",
                "--column-inserts",
                "--table",
                "public.authors",
                "--table",
                "public.articles",
            ]),
            false,
        ),
        // Bundled short options, attached arguments, unambiguous prefixes.
        (
            "bundled_and_prefixed",
            strings(&[
                "-Oxs",
                "-npublic",
                "-N",
                "audit",
                "--exclude-table-data=audit.*",
                "--lock-wait=10s",
                "--quote-all",
                "-Fc",
                "-Z6",
            ]),
            false,
        ),
        ("1000_tables", many_tables, false),
    ];
    let mut group = c.benchmark_group("opts");
    for (name, request, clean_output) in &requests {
        opts::parse(request, *clean_output).expect("an accepted request");
        group.throughput(Throughput::Elements(request.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| opts::parse(black_box(request), *clean_output))
        });
    }
    group.finish();
}

criterion_group!(benches, parser);
criterion_main!(benches);
