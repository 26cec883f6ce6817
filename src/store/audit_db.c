/* The audit file behind audit_db.h: its connection settings (as the token
 * store's, but with triggers on, since the file's own triggers are its
 * append-only fence), its schema and magic, appends under the file's write
 * lock and ordered reads. docs/audit.md describes the format. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sqlite3.h>
#include "store/audit_db.h"
#include "store/conn.h"
#include "util/be.h"

#define MAGIC "custos-audit"

#define COL(f, t) { #f, t, offsetof(audit_row, f), sizeof(((audit_row *)0)->f) }
const audit_col AUDIT_COLS[] = {
    COL(seq, AUDIT_COL_INT),         COL(time_us, AUDIT_COL_INT),
    COL(kind, AUDIT_COL_TEXT),       COL(host, AUDIT_COL_TEXT),
    COL(os_user, AUDIT_COL_TEXT),    COL(pid, AUDIT_COL_INT),
    COL(process, AUDIT_COL_TEXT),    COL(token_user, AUDIT_COL_TEXT),
    COL(roles, AUDIT_COL_TEXT),      COL(session, AUDIT_COL_UINT),
    COL(function, AUDIT_COL_TEXT),   COL(mechanism, AUDIT_COL_TEXT),
    COL(key_handle, AUDIT_COL_UINT), COL(key_label, AUDIT_COL_TEXT),
    COL(key_id, AUDIT_COL_TEXT),     COL(key_family, AUDIT_COL_TEXT),
    COL(key_version, AUDIT_COL_UINT), COL(resource, AUDIT_COL_TEXT),
    COL(rv, AUDIT_COL_TEXT),         COL(decision, AUDIT_COL_TEXT),
    COL(count, AUDIT_COL_INT),       COL(first_us, AUDIT_COL_INT),
    COL(last_us, AUDIT_COL_INT),
};
#undef COL
const size_t AUDIT_NCOLS = ARRAY_LEN(AUDIT_COLS);

/* The file format, version 1. Never edited: a change is a new version. The
 * triggers keep the sqlite3 shell from editing by accident; the chain is
 * what detects an edit made on purpose. */
static const char SCHEMA_V1[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
    "CREATE TABLE records ("
    " seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, kind TEXT NOT NULL,"
    " host TEXT NOT NULL, os_user TEXT NOT NULL, pid INTEGER NOT NULL,"
    " process TEXT NOT NULL, token_user TEXT NOT NULL, roles TEXT NOT NULL,"
    " session INTEGER NOT NULL, function TEXT NOT NULL, mechanism TEXT NOT NULL,"
    " key_handle INTEGER NOT NULL, key_label TEXT NOT NULL, key_id TEXT NOT NULL,"
    " key_family TEXT NOT NULL, key_version INTEGER NOT NULL, resource TEXT NOT NULL,"
    " rv TEXT NOT NULL, decision TEXT NOT NULL, count INTEGER NOT NULL,"
    " first_us INTEGER NOT NULL, last_us INTEGER NOT NULL,"
    " prev_mac BLOB NOT NULL, mac BLOB NOT NULL);"
    "CREATE INDEX records_time ON records(time_us);"
    "CREATE TRIGGER records_no_update BEFORE UPDATE ON records"
    " BEGIN SELECT RAISE(ABORT, 'custos audit records are append-only'); END;"
    "CREATE TRIGGER records_no_delete BEFORE DELETE ON records"
    " BEGIN SELECT RAISE(ABORT, 'custos audit records are append-only'); END;"
    "INSERT INTO meta(key, value) VALUES ('magic', CAST('" MAGIC "' AS BLOB));"
    "PRAGMA user_version = 1;";

enum { S_BEGIN, S_COMMIT, S_ROLLBACK, S_LAST, S_META_GET, S_META_PUT, S_INSERT, S_SCAN, S_COUNT_ };

struct audit_db {
    pthread_mutex_t lock;   /* every use of conn */
    sqlite3 *conn;          /* NULL after fork_prepare until next use */
    sqlite3_stmt *stmt[S_COUNT_];
    char *path;
    unsigned max_pages;
    audit_db *next_open;    /* registry, for fork */
    audit_db *forgotten;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static audit_db *registry;
static audit_db *forgotten;

/* SQLITE_FULL is a full disk (or the test cap); everything else that is not
 * memory is the device's fault, including a read-only file. */
static CK_RV rc_rv(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW: return CKR_OK;
    case SQLITE_FULL:
    case SQLITE_TOOBIG: return CKR_DEVICE_MEMORY;
    case SQLITE_NOMEM: return CKR_HOST_MEMORY;
    default: return CKR_DEVICE_ERROR;
    }
}

/* ---- statements ------------------------------------------------------------ */

/* INSERT and SELECT name the columns from AUDIT_COLS, so the order there is
 * the order here. */
static char *sql_for(int id)
{
    static const char *const FIXED[] = {
        [S_BEGIN] = "BEGIN IMMEDIATE",
        [S_COMMIT] = "COMMIT",
        [S_ROLLBACK] = "ROLLBACK",
        [S_LAST] = "SELECT seq, mac FROM records ORDER BY seq DESC LIMIT 1",
        [S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
        [S_META_PUT] = "INSERT INTO meta(key, value) VALUES (?1, ?2)"
                       " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    };
    char cols[1024] = "", params[256] = "";
    size_t cl = 0, pl = 0;
    char *out;

    if (id < S_INSERT)
        return strdup(FIXED[id]);
    for (size_t i = 0; i < AUDIT_NCOLS; i++) {
        cl += (size_t)snprintf(cols + cl, sizeof(cols) - cl, "%s, ", AUDIT_COLS[i].name);
        pl += (size_t)snprintf(params + pl, sizeof(params) - pl, "?%zu, ", i + 1);
    }
    pl += (size_t)snprintf(params + pl, sizeof(params) - pl, "?%zu, ?%zu", AUDIT_NCOLS + 1,
                           AUDIT_NCOLS + 2);
    if (cl >= sizeof(cols) || pl >= sizeof(params))
        return NULL;
    if (id == S_INSERT) {
        if (asprintf(&out, "INSERT INTO records(%sprev_mac, mac) VALUES (%s)", cols, params) < 0)
            return NULL;
    } else if (asprintf(&out, "SELECT %sprev_mac, mac FROM records WHERE seq > ?1"
                              " AND time_us >= ?2 AND time_us <= ?3 ORDER BY seq",
                        cols) < 0) {
        return NULL;
    }
    return out;
}

static CK_RV exec(sqlite3 *c, const char *sql)
{
    return rc_rv(sqlite3_exec(c, sql, NULL, NULL, NULL));
}

static CK_RV connect_db(audit_db *db)
{
    sqlite3 *c = NULL;
    CK_RV rv;
    /* As the token store's connections, except that triggers stay on:
     * records_no_update/_delete must fire. This code itself never updates
     * or deletes a record. */
    GUARD(store_connect(db->path, SQLITE_OPEN_READWRITE, true, rc_rv, &c));
    if (db->max_pages != 0) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %u", db->max_pages);
        GUARD_OUT(exec(c, sql));
    }
    db->conn = c;
    c = NULL;
out:
    sqlite3_close_v2(c);
    return rv;
}

static void disconnect(audit_db *db)
{
    for (size_t i = 0; i < ARRAY_LEN(db->stmt); i++) {
        sqlite3_finalize(db->stmt[i]);
        db->stmt[i] = NULL;
    }
    sqlite3_close_v2(db->conn);
    db->conn = NULL;
}

static CK_RV stmt(audit_db *db, int id, sqlite3_stmt **out)
{
    if (db->conn == NULL)
        GUARD(connect_db(db));
    if (db->stmt[id] == NULL) {
        char *sql = sql_for(id);
        ENSURE(sql != NULL, CKR_HOST_MEMORY);
        int rc = sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                    &db->stmt[id], NULL);
        free(sql);
        GUARD(rc_rv(rc));
    }
    *out = db->stmt[id];
    return CKR_OK;
}

static CK_RV run_id(audit_db *db, int id)
{
    sqlite3_stmt *s;
    GUARD(stmt(db, id, &s));
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? CKR_OK : rc_rv(rc == SQLITE_ROW ? SQLITE_ERROR : rc);
}

/* SQLite may have rolled back already (after SQLITE_FULL or an I/O error). */
static void rollback(audit_db *db)
{
    if (db->conn == NULL || sqlite3_get_autocommit(db->conn))
        return;
    if (run_id(db, S_ROLLBACK) != CKR_OK)
        sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- the schema -------------------------------------------------------------- */

static CK_RV query_int(sqlite3 *c, const char *sql, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    int rc = sqlite3_prepare_v2(c, sql, -1, &s, NULL);
    ENSURE_OUT(rc == SQLITE_OK, CKR_DEVICE_ERROR);
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW, rc == SQLITE_DONE ? CKR_DEVICE_ERROR : rc_rv(rc));
    *out = sqlite3_column_int64(s, 0);
    rv = CKR_OK;
out:
    sqlite3_finalize(s);
    return rv;
}

/* Version 1 with the magic: ours. Version 0 without any table: a file that
 * is being (or was never) built: *empty. Anything else is refused. The
 * caller holds a transaction: the reads must see one snapshot. */
static CK_RV check_schema_locked(sqlite3 *c, bool *empty)
{
    int64_t version, tables, magic;
    GUARD(query_int(c, "PRAGMA user_version", &version));
    if (version == 0) {
        GUARD(query_int(c, "SELECT count(*) FROM sqlite_schema", &tables));
        ENSURE(tables == 0, CKR_DEVICE_ERROR);
        *empty = true;
        return CKR_OK;
    }
    ENSURE(version == AUDIT_DB_SCHEMA_VERSION, CKR_DEVICE_ERROR);
    GUARD(query_int(c, "SELECT count(*) FROM meta WHERE key = 'magic'"
                       " AND value = CAST('" MAGIC "' AS BLOB)", &magic));
    ENSURE(magic == 1, CKR_DEVICE_ERROR);
    *empty = false;
    return CKR_OK;
}

/* check_schema_locked in a read transaction of its own. Without one, its
 * reads were two snapshots: another process committing the schema between
 * them showed a file of version 0 with tables, which was refused (a process
 * opening a new audit file beside others then ran without the trail). */
static CK_RV check_schema(sqlite3 *c, bool *empty)
{
    CK_RV rv;
    GUARD(exec(c, "BEGIN"));
    rv = check_schema_locked(c, empty);
    if (rv == CKR_OK)
        rv = exec(c, "COMMIT");
    if (!sqlite3_get_autocommit(c))
        sqlite3_exec(c, "ROLLBACK", NULL, NULL, NULL);
    return rv;
}

/* Build the schema in a write transaction; another process may have built
 * it meanwhile, so look again once the lock is held. */
static CK_RV build_schema(sqlite3 *c)
{
    CK_RV rv;
    bool empty;
    GUARD(exec(c, "BEGIN IMMEDIATE"));
    GUARD_OUT(check_schema_locked(c, &empty));
    if (empty)
        GUARD_OUT(exec(c, SCHEMA_V1));
    rv = exec(c, "COMMIT");
out:
    if (!sqlite3_get_autocommit(c))
        sqlite3_exec(c, "ROLLBACK", NULL, NULL, NULL);
    return rv;
}

/* ---- opening and closing ------------------------------------------------------- */

CK_RV audit_db_open(const char *path, bool create, audit_db **out)
{
    audit_db *db = NULL;
    CK_RV rv;
    bool empty = false, has_mutex = false;

    ENSURE(path != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    *out = NULL;
    if (create) {
        /* 0600 like the token file; SQLite gives -wal and -shm the same
         * mode. Not O_EXCL: every process of the token opens it. */
        int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        ENSURE(fd >= 0, CKR_DEVICE_ERROR);
        close(fd);
    } else {
        struct stat sb;
        ENSURE(stat(path, &sb) == 0 && S_ISREG(sb.st_mode), CKR_DEVICE_ERROR);
    }
    db = calloc(1, sizeof(*db));
    ENSURE(db != NULL, CKR_HOST_MEMORY);
    db->path = strdup(path);
    ENSURE_OUT(db->path != NULL, CKR_HOST_MEMORY);
    ENSURE_OUT(pthread_mutex_init(&db->lock, NULL) == 0, CKR_HOST_MEMORY);
    has_mutex = true;
    GUARD_OUT(connect_db(db));
    GUARD_OUT(check_schema(db->conn, &empty));
    if (empty)
        GUARD_OUT(build_schema(db->conn));
    pthread_mutex_lock(&registry_lock);
    db->next_open = registry;
    registry = db;
    pthread_mutex_unlock(&registry_lock);
    *out = db;
    db = NULL;
out:
    if (db != NULL) {
        disconnect(db);
        if (has_mutex)
            pthread_mutex_destroy(&db->lock);
        free(db->path);
        free(db);
    }
    return rv;
}

void audit_db_close(audit_db *db)
{
    if (db == NULL)
        return;
    pthread_mutex_lock(&registry_lock);
    for (audit_db **pp = &registry; *pp != NULL; pp = &(*pp)->next_open) {
        if (*pp == db) {
            *pp = db->next_open;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    disconnect(db);
    pthread_mutex_destroy(&db->lock);
    free(db->path);
    free(db);
}

/* As store_forget_after_fork: SQLite forbids using or closing a connection
 * in a child, and a thread gone in the child may have held the mutex. */
void audit_db_forget_after_fork(audit_db *db)
{
    if (db == NULL)
        return;
    db->forgotten = __atomic_load_n(&forgotten, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&forgotten, &db->forgotten, db, true,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
}

void audit_db_fork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (audit_db *db = registry; db != NULL; db = db->next_open) {
        pthread_mutex_lock(&db->lock);
        disconnect(db);
    }
}

void audit_db_fork_release(void)
{
    for (audit_db *db = registry; db != NULL; db = db->next_open)
        pthread_mutex_unlock(&db->lock);
    pthread_mutex_unlock(&registry_lock);
}

void audit_db_limit_pages(audit_db *db, unsigned pages)
{
    pthread_mutex_lock(&db->lock);
    db->max_pages = pages;
    disconnect(db);
    pthread_mutex_unlock(&db->lock);
}

/* ---- appending ------------------------------------------------------------------- */

static CK_RV bind_row(sqlite3_stmt *s, const audit_row *r)
{
    int rc = SQLITE_OK;
    for (size_t i = 0; i < AUDIT_NCOLS && rc == SQLITE_OK; i++) {
        const audit_col *c = &AUDIT_COLS[i];
        const char *p = (const char *)r + c->off;
        int idx = (int)i + 1;
        if (c->type == AUDIT_COL_TEXT)
            rc = sqlite3_bind_text(s, idx, p, (int)strnlen(p, c->size - 1), SQLITE_STATIC);
        else
            rc = sqlite3_bind_int64(s, idx, *(const int64_t *)(const void *)p);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(s, (int)AUDIT_NCOLS + 1, r->prev_mac, AUDIT_MAC_LEN, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(s, (int)AUDIT_NCOLS + 2, r->mac, AUDIT_MAC_LEN, SQLITE_STATIC);
    return rc_rv(rc);
}

static CK_RV last_locked(audit_db *db, int64_t *seq, uint8_t mac[AUDIT_MAC_LEN])
{
    sqlite3_stmt *s;
    CK_RV rv;
    GUARD(stmt(db, S_LAST, &s));
    int rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, rc_rv(rc));
    *seq = 0;
    memset(mac, 0, AUDIT_MAC_LEN);
    if (rc == SQLITE_ROW) {
        /* The writer never leaves a short MAC; a tampered last row must
         * not stop appending, and verify names it anyway. */
        const void *m = sqlite3_column_blob(s, 1);
        *seq = sqlite3_column_int64(s, 0);
        if (m != NULL && sqlite3_column_bytes(s, 1) == AUDIT_MAC_LEN)
            memcpy(mac, m, AUDIT_MAC_LEN);
    }
    rv = CKR_OK;
out:
    sqlite3_reset(s);
    return rv;
}

CK_RV audit_db_begin(audit_db *db)
{
    ENSURE(db != NULL, CKR_ARGUMENTS_BAD);
    pthread_mutex_lock(&db->lock);
    CK_RV rv = run_id(db, S_BEGIN);
    if (rv != CKR_OK) {
        rollback(db);
        pthread_mutex_unlock(&db->lock);
    }
    return rv;
}

CK_RV audit_db_end(audit_db *db, bool commit)
{
    CK_RV rv = commit ? run_id(db, S_COMMIT) : CKR_OK;
    if (!commit || rv != CKR_OK)
        rollback(db);
    pthread_mutex_unlock(&db->lock);
    return rv;
}

CK_RV audit_db_append_locked(audit_db *db, audit_row *rows, size_t n, audit_db_seal_fn seal,
                             void *ctx)
{
    CK_RV rv;
    int64_t seq;
    uint8_t mac[AUDIT_MAC_LEN];
    sqlite3_stmt *ins;

    ENSURE(db != NULL && (rows != NULL || n == 0) && seal != NULL, CKR_ARGUMENTS_BAD);
    if (n == 0)
        return CKR_OK;
    GUARD(last_locked(db, &seq, mac));
    GUARD(stmt(db, S_INSERT, &ins));
    for (size_t i = 0; i < n; i++) {
        rows[i].seq = ++seq;
        memcpy(rows[i].prev_mac, mac, AUDIT_MAC_LEN);
        GUARD(seal(ctx, &rows[i]));
        rv = bind_row(ins, &rows[i]);
        if (rv == CKR_OK) {
            int rc = sqlite3_step(ins);
            rv = rc == SQLITE_DONE ? CKR_OK : rc_rv(rc == SQLITE_ROW ? SQLITE_ERROR : rc);
        }
        sqlite3_reset(ins);
        sqlite3_clear_bindings(ins);
        GUARD(rv);
        memcpy(mac, rows[i].mac, AUDIT_MAC_LEN);
    }
    return CKR_OK;
}

CK_RV audit_db_append(audit_db *db, audit_row *rows, size_t n, audit_db_seal_fn seal, void *ctx)
{
    ENSURE(db != NULL && (rows != NULL || n == 0) && seal != NULL, CKR_ARGUMENTS_BAD);
    if (n == 0)
        return CKR_OK;
    GUARD(audit_db_begin(db));
    CK_RV rv = audit_db_append_locked(db, rows, n, seal, ctx);
    CK_RV crv = audit_db_end(db, rv == CKR_OK);
    return rv != CKR_OK ? rv : crv;
}

CK_RV audit_db_meta_get_locked(audit_db *db, const char *key, uint8_t *buf, size_t cap,
                               size_t *len, bool *found)
{
    sqlite3_stmt *s;
    CK_RV rv;
    ENSURE(db != NULL && key != NULL && len != NULL && found != NULL, CKR_ARGUMENTS_BAD);
    *found = false;
    *len = 0;
    GUARD(stmt(db, S_META_GET, &s));
    ENSURE_OUT(sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC) == SQLITE_OK, CKR_DEVICE_ERROR);
    int rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, rc_rv(rc));
    if (rc == SQLITE_ROW) {
        const void *v = sqlite3_column_blob(s, 0);
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        *len = n;
        *found = true;
        if (v != NULL && n <= cap)
            memcpy(buf, v, n);
    }
    rv = CKR_OK;
out:
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rv;
}

CK_RV audit_db_meta_put_locked(audit_db *db, const char *key, const uint8_t *val, size_t len)
{
    sqlite3_stmt *s;
    CK_RV rv;
    ENSURE(db != NULL && key != NULL && (val != NULL || len == 0), CKR_ARGUMENTS_BAD);
    /* The magic belongs to the file format. */
    ENSURE(strcmp(key, "magic") != 0, CKR_ARGUMENTS_BAD);
    GUARD(stmt(db, S_META_PUT, &s));
    if (sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_blob(s, 2, len ? (const void *)val : "", (int)len, SQLITE_STATIC) != SQLITE_OK)
        ENSURE_OUT(false, CKR_DEVICE_ERROR);
    int rc = sqlite3_step(s);
    rv = rc == SQLITE_DONE ? CKR_OK : rc_rv(rc == SQLITE_ROW ? SQLITE_ERROR : rc);
out:
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rv;
}

/* ---- the packed row (the token's outbox) ---------------------------------------- */

size_t audit_row_pack(const audit_row *r, uint8_t *out, size_t cap)
{
    size_t off = 0;
    /* AUDIT_COLS[0] is seq: given when the row joins the chain. */
    for (size_t i = 1; i < AUDIT_NCOLS; i++) {
        const audit_col *c = &AUDIT_COLS[i];
        const char *p = (const char *)r + c->off;
        if (c->type != AUDIT_COL_TEXT) {
            if (cap - off < 8)
                return 0;
            be_put(out + off, (uint64_t) * (const int64_t *)(const void *)p, 8);
            off += 8;
            continue;
        }
        size_t len = strnlen(p, c->size - 1);
        if (cap - off < 2 + len)
            return 0;
        be_put(out + off, len, 2);
        memcpy(out + off + 2, p, len);
        off += 2 + len;
    }
    return off;
}

bool audit_row_unpack(const uint8_t *in, size_t len, audit_row *r)
{
    size_t off = 0;
    memset(r, 0, sizeof(*r));
    for (size_t i = 1; i < AUDIT_NCOLS; i++) {
        const audit_col *c = &AUDIT_COLS[i];
        char *p = (char *)r + c->off;
        if (c->type != AUDIT_COL_TEXT) {
            if (len - off < 8)
                return false;
            *(int64_t *)(void *)p = (int64_t)be_get(in + off, 8);
            off += 8;
            continue;
        }
        if (len - off < 2)
            return false;
        size_t n = (size_t)be_get(in + off, 2);
        if (n >= c->size || len - off - 2 < n || memchr(in + off + 2, 0, n) != NULL)
            return false;
        memcpy(p, in + off + 2, n);
        p[n] = '\0';
        off += 2 + n;
    }
    return off == len;
}

CK_RV audit_db_serialised(audit_db *db, CK_RV (*fn)(void *ctx), void *ctx)
{
    ENSURE(db != NULL && fn != NULL, CKR_ARGUMENTS_BAD);
    GUARD(audit_db_begin(db));
    CK_RV rv = fn(ctx);
    CK_RV crv = audit_db_end(db, rv == CKR_OK);
    return rv != CKR_OK ? rv : crv;
}

/* ---- reading ----------------------------------------------------------------------- */

/* Copy one stored row into r; the first column that does not fit its type
 * or size is named. */
static const char *read_row(sqlite3_stmt *s, audit_row *r)
{
    const char *bad = NULL;
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < AUDIT_NCOLS; i++) {
        const audit_col *c = &AUDIT_COLS[i];
        char *p = (char *)r + c->off;
        int t = sqlite3_column_type(s, (int)i);
        if (c->type != AUDIT_COL_TEXT) {
            *(int64_t *)(void *)p = sqlite3_column_int64(s, (int)i);
            if (t != SQLITE_INTEGER && bad == NULL)
                bad = c->name;
            continue;
        }
        const unsigned char *v = sqlite3_column_text(s, (int)i);
        size_t len = (size_t)sqlite3_column_bytes(s, (int)i);
        size_t keep = len < c->size ? len : c->size - 1;
        if (v != NULL)
            memcpy(p, v, keep);
        p[keep] = '\0';
        if ((t != SQLITE_TEXT || len >= c->size || strlen(p) != len) && bad == NULL)
            bad = c->name;
    }
    for (int k = 0; k < 2; k++) {
        int i = (int)AUDIT_NCOLS + k;
        uint8_t *dst = k == 0 ? r->prev_mac : r->mac;
        const void *v = sqlite3_column_blob(s, i);
        if (sqlite3_column_type(s, i) == SQLITE_BLOB && v != NULL &&
            sqlite3_column_bytes(s, i) == AUDIT_MAC_LEN)
            memcpy(dst, v, AUDIT_MAC_LEN);
        else if (bad == NULL)
            bad = k == 0 ? "prev_mac" : "mac";
    }
    return bad;
}

CK_RV audit_db_scan(audit_db *db, int64_t after_seq, int64_t since_us, int64_t until_us,
                    audit_db_row_fn fn, void *ctx)
{
    CK_RV rv;
    sqlite3_stmt *s = NULL;
    audit_row *row;
    char why[96];

    ENSURE(db != NULL && fn != NULL, CKR_ARGUMENTS_BAD);
    row = malloc(sizeof(*row));
    ENSURE(row != NULL, CKR_HOST_MEMORY);
    pthread_mutex_lock(&db->lock);
    GUARD_OUT(stmt(db, S_SCAN, &s));
    if (sqlite3_bind_int64(s, 1, after_seq) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, since_us) != SQLITE_OK ||
        sqlite3_bind_int64(s, 3, until_us) != SQLITE_OK)
        ENSURE_OUT(false, CKR_DEVICE_ERROR);
    /* One statement: one read snapshot of the WAL, whoever appends. */
    for (;;) {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            break;
        ENSURE_OUT(rc == SQLITE_ROW, rc_rv(rc));
        const char *bad = read_row(s, row);
        if (bad != NULL)
            snprintf(why, sizeof(why), "malformed column %s", bad);
        GUARD_OUT(fn(ctx, row, bad != NULL ? why : NULL));
    }
    rv = CKR_OK;
out:
    if (s != NULL)
        sqlite3_reset(s);
    pthread_mutex_unlock(&db->lock);
    free(row);
    return rv;
}

CK_RV audit_db_last_seq(audit_db *db, int64_t *seq)
{
    uint8_t mac[AUDIT_MAC_LEN];
    ENSURE(db != NULL && seq != NULL, CKR_ARGUMENTS_BAD);
    pthread_mutex_lock(&db->lock);
    CK_RV rv = last_locked(db, seq, mac);
    pthread_mutex_unlock(&db->lock);
    return rv;
}
