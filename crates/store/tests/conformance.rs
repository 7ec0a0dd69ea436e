//! The same behaviour, checked on both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward_store::testing::{PgSchema, SqliteTemp};
use steward_store::{Backend, Conn, Db, Migration, StoreError, Value, params};

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "things",
        sql: "CREATE TABLE things (id TEXT PRIMARY KEY, n BIGINT NOT NULL, blob BYTEA, note TEXT);
              CREATE INDEX things_n ON things (n);",
    },
    Migration {
        version: 2,
        name: "more",
        sql: "CREATE TABLE more (id BIGINT PRIMARY KEY, v TEXT)",
    },
];

fn conformance(db: &Db) {
    db.migrate(MIGRATIONS).unwrap();
    // Applying again is a no-op.
    db.migrate(MIGRATIONS).unwrap();
    assert_eq!(
        db.table_names().unwrap(),
        vec!["more", "schema_migrations", "things"]
    );
    assert_eq!(
        db.column_names("things").unwrap(),
        vec!["id", "n", "blob", "note"]
    );
    assert!(db.column_names("no_such_table").unwrap().is_empty());
    db.checkpoint().unwrap();

    // Round trip of every value type, NULL included.
    db.write(|c: &mut dyn Conn| {
        c.execute(
            "INSERT INTO things (id, n, blob, note) VALUES ($1, $2, $3, $4)",
            params!["a", 1i64, vec![0u8, 255, 10], Option::<String>::None],
        )
    })
    .unwrap();
    let row = db
        .read(|c| {
            c.query_opt(
                "SELECT id, n, blob, note FROM things WHERE id = $1",
                params!["a"],
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(row.text(0).unwrap(), "a");
    assert_eq!(row.i64(1).unwrap(), 1);
    assert_eq!(row.bytes(2).unwrap(), vec![0u8, 255, 10]);
    assert_eq!(row.opt_text(3).unwrap(), None);
    // Asking for the wrong type is an error, not a silent conversion.
    assert!(row.i64(0).is_err());

    // A literal containing "$1" is left alone by the placeholder rewrite.
    let lit = db
        .read(|c| {
            c.query_opt(
                "SELECT '$1' || note FROM things WHERE id = $1",
                params!["zz"],
            )
        })
        .unwrap();
    assert!(lit.is_none());

    // Unique violations surface as Conflict.
    let dup = db.write(|c: &mut dyn Conn| {
        c.execute(
            "INSERT INTO things (id, n) VALUES ($1, $2)",
            params!["a", 2i64],
        )
    });
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    // A failed transaction leaves nothing behind.
    let res: Result<(), StoreError> = db.write(|c: &mut dyn Conn| {
        c.execute(
            "INSERT INTO things (id, n) VALUES ($1, $2)",
            params!["b", 2i64],
        )?;
        c.execute(
            "INSERT INTO things (id, n) VALUES ($1, $2)",
            params!["a", 3i64],
        )?;
        Ok(())
    });
    assert!(res.is_err());
    assert_eq!(count(db, "SELECT COUNT(*) FROM things"), 1);

    // ON CONFLICT DO NOTHING and RETURNING behave alike.
    let n = db
        .write(|c: &mut dyn Conn| {
            c.execute(
                "INSERT INTO things (id, n) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                params!["a", 9i64],
            )
        })
        .unwrap();
    assert_eq!(n, 0);
    let ret = db
        .write(|c: &mut dyn Conn| {
            c.query(
                "UPDATE things SET n = n + 1 WHERE id = $1 RETURNING n",
                params!["a"],
            )
        })
        .unwrap();
    assert_eq!(ret[0].i64(0).unwrap(), 2);

    // Bulk append through copy_in, inside a transaction with other statements.
    let total = db
        .write(|c: &mut dyn Conn| {
            let mut rows = (0..5000i64).map(|i| {
                vec![
                    Value::Text(format!("bulk-{i}")),
                    Value::Int(i),
                    Value::Bytes(i.to_le_bytes().to_vec()),
                    Value::Null,
                ]
            });
            let n = c.copy_in("things", &["id", "n", "blob", "note"], &mut rows)?;
            c.execute(
                "INSERT INTO more (id, v) VALUES ($1, $2)",
                params![1i64, "x"],
            )?;
            Ok::<_, StoreError>(n)
        })
        .unwrap();
    assert_eq!(total, 5000);
    let sum = db
        .read(|c| {
            c.query_opt(
                "SELECT CAST(SUM(n) AS BIGINT), COUNT(*) FROM things WHERE id LIKE 'bulk-%'",
                &[],
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(sum.i64(0).unwrap(), (0..5000i64).sum::<i64>());
    assert_eq!(sum.i64(1).unwrap(), 5000);

    // Small and large appends alike (PostgreSQL writes up to 256 rows as one
    // INSERT and more through COPY): every value type, NULLs, at the boundary and
    // past it, and an empty one.
    for n in [0i64, 1, 255, 256, 257, 600] {
        let stored = db
            .write(|c: &mut dyn Conn| {
                let mut rows = (0..n).map(|i| {
                    vec![
                        Value::Text(format!("size{n}-{i}")),
                        Value::Int(i),
                        if i % 2 == 0 {
                            Value::Bytes(vec![0, 255, i as u8])
                        } else {
                            Value::Null
                        },
                        Value::Text(format!("ünïcode {i}")),
                    ]
                });
                c.copy_in("things", &["id", "n", "blob", "note"], &mut rows)
            })
            .unwrap();
        assert_eq!(stored, n as u64, "copy_in of {n} rows");
        let rows = db
            .read(|c| {
                c.query(
                    "SELECT n, blob, note FROM things WHERE id LIKE $1 ORDER BY n",
                    params![format!("size{n}-%")],
                )
            })
            .unwrap();
        assert_eq!(rows.len() as i64, n);
        for (i, r) in rows.iter().enumerate() {
            let i = i as i64;
            assert_eq!(r.i64(0).unwrap(), i);
            let blob = r.opt_bytes(1).unwrap();
            if i % 2 == 0 {
                assert_eq!(blob, Some(vec![0, 255, i as u8]));
            } else {
                assert_eq!(blob, None);
            }
            assert_eq!(r.text(2).unwrap(), format!("ünïcode {i}"));
        }
    }
    // A duplicate key inside a small append is a Conflict and stores nothing.
    let dup = db.write(|c: &mut dyn Conn| {
        let mut rows = vec![
            vec![
                Value::Text("fresh".into()),
                Value::Int(1),
                Value::Null,
                Value::Null,
            ],
            vec![
                Value::Text("a".into()),
                Value::Int(1),
                Value::Null,
                Value::Null,
            ],
        ]
        .into_iter();
        c.copy_in("things", &["id", "n", "blob", "note"], &mut rows)
    });
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(
        count(db, "SELECT COUNT(*) FROM things WHERE id = 'fresh'"),
        0
    );

    // query_each streams every row, typed, inside one snapshot; an error from the
    // callback stops the walk and comes back to the caller.
    let (seen, bytes) = db
        .read(|c| {
            let mut bytes = 0usize;
            let n = c.query_each(
                "SELECT id, n, blob, note FROM things WHERE id LIKE $1",
                params!["bulk-%"],
                &mut |r| {
                    bytes += r.bytes(2)?.len();
                    assert_eq!(r.opt_text(3)?, None);
                    Ok(())
                },
            )?;
            Ok((n, bytes))
        })
        .unwrap();
    assert_eq!((seen, bytes), (5000, 5000 * 8));
    let mut calls = 0;
    let stopped = db.read(|c| {
        c.query_each("SELECT id FROM things", &[], &mut |_| {
            calls += 1;
            Err(StoreError::Sqlite("stop".into()))
        })
    });
    assert!(stopped.is_err());
    assert_eq!(calls, 1);

    // Vacuuming named tables works on both (a checkpoint on SQLite); anything but a
    // plain identifier is refused before it reaches SQL.
    db.vacuum(&["things", "more"]).unwrap();
    assert!(db.vacuum(&["things; DROP TABLE more"]).is_err());

    // A row of the wrong width is refused and the whole copy rolls back, in a
    // small append and past the first few hundred rows of a large one.
    let bad = db.write(|c: &mut dyn Conn| {
        let mut rows = vec![vec![Value::Text("w".into()), Value::Int(1)]].into_iter();
        c.copy_in("things", &["id", "n", "blob"], &mut rows)
    });
    assert!(bad.is_err());
    let before = count(db, "SELECT COUNT(*) FROM things");
    let bad = db.write(|c: &mut dyn Conn| {
        let mut rows = (0..400i64).map(|i| {
            if i == 399 {
                vec![Value::Text("w".into())]
            } else {
                vec![Value::Text(format!("wide-{i}")), Value::Int(i), Value::Null]
            }
        });
        c.copy_in("things", &["id", "n", "blob"], &mut rows)
    });
    assert!(matches!(bad, Err(StoreError::Type { .. })), "{bad:?}");
    assert_eq!(count(db, "SELECT COUNT(*) FROM things"), before);

    // Statements run again and again, more distinct ones than a connection keeps
    // prepared (PostgreSQL caches 256), then the first ones again: the same
    // answers throughout.
    for round in 0..2 {
        for k in 0..300i64 {
            let got = db
                .read(|c| c.query_opt(&format!("SELECT CAST($1 AS BIGINT) + {k}"), params![round]))
                .unwrap()
                .unwrap()
                .i64(0)
                .unwrap();
            assert_eq!(got, round + k);
        }
    }
    // A table that changes shape under a statement run before: the change goes
    // through execute_batch, and the same text afterwards sees the new column.
    let before = db
        .read(|c| c.query("SELECT * FROM more WHERE id = 1", &[]))
        .unwrap();
    assert_eq!(before[0].0.len(), 2);
    db.write(|c: &mut dyn Conn| c.execute_batch("ALTER TABLE more ADD COLUMN extra TEXT"))
        .unwrap();
    let after = db
        .read(|c| c.query("SELECT * FROM more WHERE id = 1", &[]))
        .unwrap();
    assert_eq!(after[0].0.len(), 3);
    db.write(|c: &mut dyn Conn| c.execute_batch("ALTER TABLE more DROP COLUMN extra"))
        .unwrap();

    // Readers and writers in parallel threads.
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..50i64 {
                    db.write(|c: &mut dyn Conn| {
                        c.execute(
                            "INSERT INTO more (id, v) VALUES ($1, $2)",
                            params![1000 + t * 100 + i, "p"],
                        )
                    })
                    .unwrap();
                    db.read(|c| c.query("SELECT COUNT(*) FROM more", &[]))
                        .unwrap();
                }
            });
        }
    });
    let n = db
        .read(|c| c.query_opt("SELECT COUNT(*) FROM more", &[]))
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap();
    assert_eq!(n, 201);
}

#[test]
fn sqlite_conformance() {
    let tmp = SqliteTemp::create().unwrap();
    let db = tmp.open().unwrap();
    assert_eq!(db.backend(), Backend::Sqlite);
    conformance(&db);
    // The file is in WAL mode, so a second handle (another process) can read.
    let other = tmp.open().unwrap();
    assert!(other.table_names().unwrap().contains(&"things".to_owned()));
}

#[test]
fn postgres_conformance() {
    let Some(pg) = PgSchema::create().unwrap() else {
        return;
    };
    let db = pg.open().unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    conformance(&db);
    // Every pooled connection plans cached statements for their values (a
    // generic plan for `tenant_id = $1 AND x IN (…)` would scan the tenant).
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mode = db
                    .read(|c| c.query_opt("SELECT current_setting('plan_cache_mode')", &[]))
                    .unwrap()
                    .unwrap()
                    .text(0)
                    .unwrap();
                assert_eq!(mode, "force_custom_plan");
            });
        }
    });
    // File backups are SQLite's; PostgreSQL exports a snapshot instead.
    let tmp = tempfile::tempdir().unwrap();
    assert!(db.backup_to(&tmp.path().join("x.sqlite")).is_err());
}

fn count(db: &Db, sql: &str) -> i64 {
    db.read(|c| c.query_opt(sql, &[]))
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap()
}

/// The online backup is one consistent snapshot even while another connection
/// keeps writing: every transaction below inserts a pair of rows, so a torn copy
/// would show an odd count or a half pair.
#[test]
fn sqlite_online_backup_is_consistent_while_writing() {
    let tmp = SqliteTemp::create().unwrap();
    let db = tmp.open().unwrap();
    db.migrate(MIGRATIONS).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let backups = tmp.dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    std::thread::scope(|s| {
        let writer = db.clone();
        let stop = &stop;
        let handle = s.spawn(move || {
            let mut i = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writer
                    .write(|c: &mut dyn Conn| {
                        for half in 0..2i64 {
                            c.execute(
                                "INSERT INTO things (id, n, blob) VALUES ($1, $2, $3)",
                                params![format!("p{i}-{half}"), i, vec![7u8; 2000]],
                            )?;
                        }
                        Ok::<_, StoreError>(())
                    })
                    .unwrap();
                i += 1;
            }
            i
        });
        // Let the writer get going, then take several backups while it runs.
        while count(&db, "SELECT COUNT(*) FROM things") < 200 {
            std::thread::yield_now();
        }
        for k in 0..3 {
            let dest = backups.join(format!("b{k}.sqlite"));
            db.backup_to(&dest).unwrap();
            // One self-contained file, not in WAL mode.
            assert!(!backups.join(format!("b{k}.sqlite-wal")).exists());
            let raw = rusqlite_header(&dest);
            assert_eq!((raw[18], raw[19]), (1, 1), "rollback-journal mode");
            let copy = Db::open_sqlite(&dest).unwrap();
            let rows = count(&copy, "SELECT COUNT(*) FROM things");
            assert!(rows >= 200 && rows % 2 == 0, "torn copy: {rows} rows");
            let halves = count(
                &copy,
                "SELECT COUNT(*) FROM (SELECT n FROM things GROUP BY n HAVING COUNT(*) <> 2) AS odd",
            );
            assert_eq!(halves, 0);
            let ok = copy
                .read(|c| c.query_opt("PRAGMA integrity_check", &[]))
                .unwrap()
                .unwrap()
                .text(0)
                .unwrap();
            assert_eq!(ok, "ok");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(handle.join().unwrap() > 100);
    });
    // An existing file is never overwritten.
    let err = db.backup_to(&backups.join("b0.sqlite")).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

fn rusqlite_header(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()[..100].to_vec()
}

/// `sqlite_in_use` sees any open connection; `sqlite_replace` refuses while one
/// exists, changing nothing, and otherwise swaps the whole contents.
#[test]
fn sqlite_replace_needs_the_file_to_itself() {
    let tmp = SqliteTemp::create().unwrap();
    let live_path = tmp.path();
    let src_path = tmp.dir.path().join("src.sqlite");
    let live = Db::open_sqlite(&live_path).unwrap();
    live.migrate(MIGRATIONS).unwrap();
    live.write(|c: &mut dyn Conn| c.execute("INSERT INTO more (id, v) VALUES (1, 'live')", &[]))
        .unwrap();
    {
        let src = Db::open_sqlite(&src_path).unwrap();
        src.migrate(MIGRATIONS).unwrap();
        src.write(|c: &mut dyn Conn| {
            c.execute("INSERT INTO more (id, v) VALUES (2, 'restored')", &[])?;
            c.execute("INSERT INTO more (id, v) VALUES (3, 'restored')", &[])
        })
        .unwrap();
        src.checkpoint().unwrap();
    }
    assert!(!Db::sqlite_in_use(&src_path).unwrap());
    assert!(!Db::sqlite_in_use(&tmp.dir.path().join("missing.sqlite")).unwrap());
    assert!(Db::sqlite_in_use(&live_path).unwrap());
    let err = Db::sqlite_replace(&live_path, &src_path).unwrap_err();
    assert!(matches!(err, StoreError::Busy(_)), "{err}");
    assert_eq!(count(&live, "SELECT COUNT(*) FROM more"), 1);
    drop(live);
    assert!(!Db::sqlite_in_use(&live_path).unwrap());
    Db::sqlite_replace(&live_path, &src_path).unwrap();
    let reopened = Db::open_sqlite(&live_path).unwrap();
    let rows = reopened
        .read(|c| c.query("SELECT id, v FROM more ORDER BY id", &[]))
        .unwrap();
    let got: Vec<(i64, String)> = rows
        .iter()
        .map(|r| (r.i64(0).unwrap(), r.text(1).unwrap()))
        .collect();
    assert_eq!(got, vec![(2, "restored".into()), (3, "restored".into())]);
    // The replaced file is an ordinary WAL database again for the next writer.
    reopened
        .write(|c: &mut dyn Conn| c.execute("INSERT INTO more (id, v) VALUES (4, 'new')", &[]))
        .unwrap();
    // A file that does not exist yet is created.
    let fresh = tmp.dir.path().join("fresh.sqlite");
    Db::sqlite_replace(&fresh, &src_path).unwrap();
    assert_eq!(
        count(
            &Db::open_sqlite(&fresh).unwrap(),
            "SELECT COUNT(*) FROM more"
        ),
        2
    );
}

#[test]
fn bad_postgres_url_is_a_clear_error() {
    let err = Db::open_postgres("postgres://nobody@127.0.0.1:1/none", None).unwrap_err();
    assert!(matches!(err, StoreError::Connect(_)), "{err}");
    let err = Db::open_postgres("not a url at all", None).unwrap_err();
    assert!(
        err.to_string().contains("PostgreSQL URL") || err.to_string().contains("connect"),
        "{err}"
    );
    let err =
        Db::open_postgres(&steward_store::testing::postgres_url(), Some("Bad-Name")).unwrap_err();
    assert!(err.to_string().contains("schema name"), "{err}");
}
