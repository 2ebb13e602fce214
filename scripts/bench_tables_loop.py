"""The plain-loop reference for scripts/bench-tables.sh: what an application
team would write to rotate an encrypted column by hand. One SELECT, then for
each row: decrypt under the old key, encrypt under the new one (AES-256-GCM
from `cryptography`, a stand-in for the per-row crypto), and one UPDATE per
row guarded by the value read; a commit every 1,000 rows.

  bench_tables_loop.py make-sqlite DB N      -> table bench_py(id, ssn) in a SQLite file
  bench_tables_loop.py make-pg N             -> the same in PostgreSQL (PG* variables)
  bench_tables_loop.py make-mysql N          -> the same in MariaDB (REKEY_TEST_MYSQL_URL)
  bench_tables_loop.py loop-sqlite DB        -> prints rows/s
  bench_tables_loop.py loop-pg               -> prints rows/s
  bench_tables_loop.py loop-mysql            -> prints rows/s
"""

import base64
import os
import sqlite3
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OLD = AESGCM(b"\x01" * 32)
NEW = AESGCM(b"\x02" * 32)


def seal(aead, plaintext):
    nonce = os.urandom(12)
    return base64.b64encode(nonce + aead.encrypt(nonce, plaintext, None)).decode()


def rotate(value):
    raw = base64.b64decode(value)
    plaintext = OLD.decrypt(raw[:12], raw[12:], None)
    return seal(NEW, plaintext)


def rows(n):
    for i in range(n):
        yield i, seal(OLD, f"ssn {i:09}".encode())


def pg():
    import psycopg  # only the PostgreSQL half needs it

    return psycopg.connect("")


def mysql():
    import pymysql  # only the MariaDB half needs it
    from urllib.parse import unquote, urlsplit

    url = urlsplit(os.environ["REKEY_TEST_MYSQL_URL"])
    return pymysql.connect(
        host=url.hostname,
        port=url.port or 3306,
        user=unquote(url.username),
        password=unquote(url.password or ""),
        database=url.path.lstrip("/"),
        autocommit=False,
    )


def main(argv):
    command = argv[0]
    if command == "make-sqlite":
        conn = sqlite3.connect(argv[1])
        conn.execute("CREATE TABLE bench_py (id INTEGER PRIMARY KEY, ssn TEXT)")
        conn.executemany("INSERT INTO bench_py VALUES (?, ?)", rows(int(argv[2])))
        conn.commit()
    elif command == "make-pg":
        with pg() as conn:
            conn.execute("CREATE TABLE bench_py (id bigint PRIMARY KEY, ssn text)")
            with conn.cursor().copy("COPY bench_py FROM STDIN") as copy:
                for row in rows(int(argv[1])):
                    copy.write_row(row)
    elif command == "make-mysql":
        conn = mysql()
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE bench_py (id BIGINT PRIMARY KEY, ssn TEXT)")
            batch = []
            for row in rows(int(argv[1])):
                batch.append(row)
                if len(batch) == 10_000:
                    cur.executemany("INSERT INTO bench_py VALUES (%s, %s)", batch)
                    batch = []
            if batch:
                cur.executemany("INSERT INTO bench_py VALUES (%s, %s)", batch)
        conn.commit()
    elif command in ("loop-sqlite", "loop-pg", "loop-mysql"):
        conn = {"loop-sqlite": lambda: sqlite3.connect(argv[1]), "loop-pg": pg, "loop-mysql": mysql}[command]()
        mark = "?" if command == "loop-sqlite" else "%s"
        start = time.perf_counter()
        read = conn.cursor()
        read.execute("SELECT id, ssn FROM bench_py ORDER BY id")
        all_rows = read.fetchall()
        write = conn.cursor()
        done = 0
        for id_, ssn in all_rows:
            write.execute(f"UPDATE bench_py SET ssn = {mark} WHERE id = {mark} AND ssn = {mark}", (rotate(ssn), id_, ssn))
            done += 1
            if done % 1000 == 0:
                conn.commit()
        conn.commit()
        elapsed = time.perf_counter() - start
        print(f"{done} {elapsed:.2f} {done / elapsed:.0f}")
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
