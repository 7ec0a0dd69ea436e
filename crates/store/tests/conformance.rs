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
    let count = db
        .read(|c| c.query_opt("SELECT COUNT(*) FROM things", &[]))
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap();
    assert_eq!(count, 1);

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

    // A row of the wrong width is refused and the whole copy rolls back.
    let bad = db.write(|c: &mut dyn Conn| {
        let mut rows = vec![vec![Value::Text("w".into()), Value::Int(1)]].into_iter();
        c.copy_in("things", &["id", "n", "blob"], &mut rows)
    });
    assert!(bad.is_err());

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
