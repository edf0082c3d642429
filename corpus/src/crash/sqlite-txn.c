/* Commits numbered transactions to an SQLite database, for `tandem crashtest` (tests/crashtest.rs), and checks what
   a crash left. Linked statically against Debian's libsqlite3 (glibc).
   Usage: sqlite-txn run DB journal|wal full|extra|off N
              opens DB with PRAGMA journal_mode=DELETE (rollback journal) or WAL, synchronous=FULL, EXTRA or OFF
              (EXTRA: FULL plus an fsync of the directory after the journal's unlink, which commits in DELETE mode),
              locking_mode=EXCLUSIVE (no shared-memory index: one process) and mmap_size=0, then commits
              transactions 1..N, each inserting row N with a 600-byte payload and updating a running total;
              prints "committed N" after each COMMIT returned
          sqlite-txn check DB
              the checker: opens DB (recovering a hot journal or a WAL as SQLite does), runs PRAGMA
              integrity_check, and checks every transaction acknowledged on stdin ("committed N") is there, whole,
              with the total matching the rows. Exit 0 when all holds; 1 with a stable one-line reason on stdout
              (the details on stderr). */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sqlite3 *db;

static void fail(const char *what) {
    printf("sqlite error: %s\n", what);
    fprintf(stderr, "%s: %s\n", what, db ? sqlite3_errmsg(db) : "no database");
    exit(1);
}

static void exec(const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, err ? err : "?");
        fail("statement failed");
    }
}

static void payload(int n, char *out, size_t cap) {
    size_t k = 0;
    while (k + 32 < cap && k < 600)
        k += snprintf(out + k, cap - k, "row %06d payload %06zu;", n, k);
}

static int run(const char *mode, const char *sync, int count) {
    char sql[2048], text[1024];
    exec("PRAGMA locking_mode=EXCLUSIVE");
    exec("PRAGMA mmap_size=0");
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s", strcmp(mode, "wal") == 0 ? "WAL" : "DELETE");
    exec(sql);
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s",
             strcmp(sync, "off") == 0 ? "OFF" : strcmp(sync, "extra") == 0 ? "EXTRA" : "FULL");
    exec(sql);
    exec("CREATE TABLE IF NOT EXISTS t(n INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    exec("CREATE TABLE IF NOT EXISTS total(id INTEGER PRIMARY KEY, sum INTEGER NOT NULL)");
    exec("INSERT OR IGNORE INTO total VALUES(1, 0)");
    for (int n = 1; n <= count; n++) {
        payload(n, text, sizeof text);
        exec("BEGIN");
        snprintf(sql, sizeof sql, "INSERT INTO t VALUES(%d, '%s')", n, text);
        exec(sql);
        snprintf(sql, sizeof sql, "UPDATE total SET sum = sum + %d WHERE id = 1", n);
        exec(sql);
        exec("COMMIT");
        printf("committed %d\n", n);
        fflush(stdout);
    }
    sqlite3_close(db);
    return 0;
}

static int check(void) {
    int acked = 0, n;
    char line[256];
    while (fgets(line, sizeof line, stdin))
        if (sscanf(line, "committed %d", &n) == 1)
            acked = n;
    sqlite3_stmt *st;
    /* As the workload: one process, the WAL index in heap memory (no -shm mapping). */
    exec("PRAGMA locking_mode=EXCLUSIVE");
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
        fail("cannot run integrity_check");
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        fail("integrity_check gave no answer");
    const char *verdict = (const char *)sqlite3_column_text(st, 0);
    if (!verdict || strcmp(verdict, "ok") != 0) {
        printf("integrity_check failed\n");
        fprintf(stderr, "%s\n", verdict ? verdict : "(null)");
        return 1;
    }
    sqlite3_finalize(st);
    if (acked == 0)
        return 0;
    long long rows = 0, sum = 0, total = -1;
    int max = 0, bad = 0;
    char want[1024];
    if (sqlite3_prepare_v2(db, "SELECT n, v FROM t ORDER BY n", -1, &st, NULL) != SQLITE_OK)
        fail("cannot read the rows");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        n = sqlite3_column_int(st, 0);
        payload(n, want, sizeof want);
        const char *v = (const char *)sqlite3_column_text(st, 1);
        if (!v || strcmp(v, want) != 0)
            bad++;
        rows++;
        sum += n;
        if (n > max)
            max = n;
    }
    if (rc != SQLITE_DONE)
        fail("reading the rows failed");
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db, "SELECT sum FROM total WHERE id = 1", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        total = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (bad) {
        printf("rows with a damaged payload\n");
        fprintf(stderr, "%d rows differ\n", bad);
        return 1;
    }
    if (rows != max || total != sum) {
        printf("transactions are not whole\n");
        fprintf(stderr, "%lld rows up to %d, total %lld against %lld\n", rows, max, total, sum);
        return 1;
    }
    if (max < acked) {
        printf("lost acknowledged transactions\n");
        fprintf(stderr, "%d committed, %d found\n", acked, max);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: sqlite-txn run DB journal|wal full|extra|off N | sqlite-txn check DB\n");
        return 2;
    }
    if (sqlite3_open(argv[2], &db) != SQLITE_OK)
        fail("cannot open the database");
    if (strcmp(argv[1], "check") == 0)
        return check();
    if (strcmp(argv[1], "run") == 0 && argc >= 6)
        return run(argv[3], argv[4], atoi(argv[5]));
    fprintf(stderr, "usage: sqlite-txn run DB journal|wal full|extra|off N | sqlite-txn check DB\n");
    return 2;
}
