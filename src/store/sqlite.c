/* The SQLite backend behind store.h: creating and opening token files, the
 * connection settings, the cache of prepared statements, and every query on
 * the token, its users, objects and metadata. Sealing lives in seal.c, the
 * schema and its migrations in migrate.c; docs/store-format.md is the map. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "store/internal.h"
#include "util/be.h"

/* Upper bound of the page cache per connection (negative: KiB); it grows
 * only as pages are read. With SQLite's default 2 MiB, a search among a
 * million objects (an 80 MiB index) goes to the kernel for most pages: 64 MiB
 * doubles find throughput there (docs/store-format.md, "Performance"). */
#define CACHE_PRAGMA "PRAGMA cache_size = -65536"
#define MAGIC_KEY "magic"

static const char *const STMT_SQL[S_COUNT_] = {
    [S_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [S_BEGIN_READ] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_DATA_VERSION] = "PRAGMA data_version",
    [S_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
    [S_SYNC_FULL] = "PRAGMA synchronous = FULL",
    [S_SYNC_GET] = "PRAGMA synchronous",
    [S_TOKEN_GET] = "SELECT label, serial, created FROM token WHERE id = 1",
    [S_TOKEN_INSERT] = "INSERT INTO token(id, label, serial, created) VALUES (1, ?1, ?2, ?3)",
    [S_TOKEN_SET_LABEL] = "UPDATE token SET label = ?1 WHERE id = 1",
    [S_USER_GET] = "SELECT user_type, roles, kdf_alg, kdf_p1, kdf_p2, kdf_p3, salt,"
                   " sealed_mk, failures, flags, lookup FROM users WHERE name = ?1",
    /* An upsert on the name only: OR REPLACE would also resolve a clash of
     * users_lookup by deleting the other user (two users, one PIN). */
    [S_USER_PUT] = "INSERT INTO users(name, user_type, roles, kdf_alg, kdf_p1,"
                   " kdf_p2, kdf_p3, salt, sealed_mk, failures, flags, lookup)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                   " ON CONFLICT(name) DO UPDATE SET user_type = excluded.user_type,"
                   " roles = excluded.roles, kdf_alg = excluded.kdf_alg,"
                   " kdf_p1 = excluded.kdf_p1, kdf_p2 = excluded.kdf_p2,"
                   " kdf_p3 = excluded.kdf_p3, salt = excluded.salt,"
                   " sealed_mk = excluded.sealed_mk, failures = excluded.failures,"
                   " flags = excluded.flags, lookup = excluded.lookup",
    [S_USER_BY_LOOKUP] = "SELECT name FROM users WHERE user_type = ?1 AND lookup = ?2",
    [S_USER_NAMES] = "SELECT name FROM users ORDER BY name",
    [S_USER_DELETE] = "DELETE FROM users WHERE name = ?1",
    /* For indexed types only (store_object_insert_unless): the terms of the
     * index's own WHERE let SQLite use the partial index attrs_find. */
    [S_ATTR_EXISTS] = "SELECT 1 FROM attrs WHERE type = ?1 AND value = ?2 AND "
                      STORE_INDEX_WHERE " LIMIT 1",
    [S_ATTR_GET] = "SELECT value FROM attrs WHERE handle = ?1 AND type = ?2 AND sealed = 0",
    [S_OUTBOX_PUT] = "INSERT INTO audit_outbox(row) VALUES (?1)",
    [S_OUTBOX_READ] = "SELECT id, row FROM audit_outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
    [S_OUTBOX_DELETE] = "DELETE FROM audit_outbox WHERE id <= ?1",
    [S_AUDIT_HEAD_GET] = "SELECT seq, mac, tag FROM audit_head WHERE id = 1",
    [S_AUDIT_HEAD_PUT] = "INSERT INTO audit_head(id, seq, mac, tag) VALUES (1, ?1, ?2, ?3)"
                         " ON CONFLICT(id) DO UPDATE SET seq = excluded.seq,"
                         " mac = excluded.mac, tag = excluded.tag"
                         " WHERE excluded.seq > audit_head.seq",
    /* One statement, so the increment is atomic across processes. */
    [S_USER_FAIL] = "UPDATE users SET failures = min(failures + 1, 4294967295)"
                    " WHERE name = ?1 RETURNING failures",
    [S_USER_FAILURES] = "SELECT failures FROM users WHERE name = ?1",
    [S_USER_RESET] = "UPDATE users SET failures = 0 WHERE name = ?1 AND failures <> 0",
    [S_USERS_DELETE] = "DELETE FROM users",
    [S_OBJ_INSERT] = "INSERT INTO objects(created) VALUES (?1)",
    [S_OBJ_EXISTS] = "SELECT 1 FROM objects WHERE handle = ?1",
    /* One statement (one snapshot): no row means no object; a row with a
     * NULL type is an object without attributes. */
    [S_OBJ_LOAD] = "SELECT a.type, a.value, a.sealed FROM objects AS o"
                   " LEFT JOIN attrs AS a ON a.handle = o.handle"
                   " WHERE o.handle = ?1 ORDER BY a.type",
    [S_OBJ_DELETE] = "DELETE FROM objects WHERE handle = ?1",
    [S_OBJS_DELETE] = "DELETE FROM objects",
    [S_ATTRS_DELETE] = "DELETE FROM attrs",
    [S_OBJ_COUNT] = "SELECT count(*) FROM objects",
    [S_ATTR_PUT] = "INSERT INTO attrs(handle, type, value, sealed) VALUES (?1, ?2, ?3, ?4)"
                   " ON CONFLICT(handle, type) DO UPDATE"
                   " SET value = excluded.value, sealed = excluded.sealed",
    [S_ATTR_MATCH] = "SELECT 1 FROM attrs"
                     " WHERE handle = ?1 AND type = ?2 AND value = ?3 AND sealed = 0",
    [S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [S_META_PUT] = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
};

/* SQLite primary result codes -> CK_RV; anything else is a device error. */
static const struct {
    int rc;
    CK_RV rv;
} RC_MAP[] = {
    { SQLITE_OK, CKR_OK },
    { SQLITE_NOMEM, CKR_HOST_MEMORY },
    { SQLITE_FULL, CKR_DEVICE_MEMORY },
    { SQLITE_TOOBIG, CKR_DEVICE_MEMORY },
    /* Still locked after STORE_BUSY_TIMEOUT_MS: the file is fine, the call failed. */
    { SQLITE_BUSY, CKR_FUNCTION_FAILED },
    { SQLITE_LOCKED, CKR_FUNCTION_FAILED },
    { SQLITE_MISUSE, CKR_GENERAL_ERROR },
    { SQLITE_CONSTRAINT, CKR_GENERAL_ERROR },
};

/* While opening, these mean "not a file we understand". */
static const int NOT_RECOGNIZED[] = {
    SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_FORMAT, SQLITE_ERROR,
    SQLITE_SCHEMA, SQLITE_EMPTY, SQLITE_MISMATCH, SQLITE_RANGE,
};

/* Attribute types whose few values are shared by many objects (PKCS#11
 * 3.2 sec. 4: class, key type, the booleans). A search never starts from one
 * of these when it has anything else to go on. */
static const CK_ATTRIBUTE_TYPE BROAD[] = {
    CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_MODIFIABLE, CKA_COPYABLE,
    CKA_DESTROYABLE, CKA_KEY_TYPE, CKA_CERTIFICATE_TYPE, CKA_HW_FEATURE_TYPE,
    CKA_SENSITIVE, CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP, CKA_UNWRAP, CKA_SIGN,
    CKA_SIGN_RECOVER, CKA_VERIFY, CKA_VERIFY_RECOVER, CKA_DERIVE,
    CKA_EXTRACTABLE, CKA_LOCAL, CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE,
    CKA_ALWAYS_AUTHENTICATE, CKA_WRAP_WITH_TRUSTED, CKA_TRUSTED,
};

CK_RV store_sqlite_rv(int rc)
{
    rc &= 0xff;
    for (size_t i = 0; i < ARRAY_LEN(RC_MAP); i++)
        if (RC_MAP[i].rc == rc)
            return RC_MAP[i].rv;
    return CKR_DEVICE_ERROR;
}

CK_RV store_sqlite_open_rv(int rc)
{
    rc &= 0xff;
    for (size_t i = 0; i < ARRAY_LEN(NOT_RECOGNIZED); i++)
        if (NOT_RECOGNIZED[i] == rc)
            return CKR_TOKEN_NOT_RECOGNIZED;
    return store_sqlite_rv(rc);
}

/* ---- small helpers ------------------------------------------------------ */

static void lock(store *st)
{
    pthread_mutex_lock(&st->lock);
}

static void unlock(store *st)
{
    pthread_mutex_unlock(&st->lock);
}

static CK_RV connect_db(const char *path, int flags, sqlite3 **out);

/* PRAGMA mmap_size for one connection (store_set_mmap). */
static CK_RV apply_mmap(sqlite3 *db, uint64_t bytes)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA mmap_size = %llu", (unsigned long long)bytes);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? CKR_OK : store_sqlite_rv(rc);
}

/* Open c if it is closed (a reader not used yet, any connection after
 * store_fork_prepare closed it), and give it the store's mmap size. The
 * caller owns c (the store's lock for the main one, rbusy for a reader). */
static CK_RV conn_ready(store *st, store_conn *c)
{
    uint64_t want = __atomic_load_n(&st->mmap_bytes, __ATOMIC_RELAXED);
    if (c->db == NULL) {
        ENSURE(st->path != NULL, CKR_DEVICE_ERROR);
        GUARD(connect_db(st->path, SQLITE_OPEN_READWRITE, &c->db));
        c->mmap_bytes = 0;
    }
    if (c->mmap_bytes != want) {
        GUARD(apply_mmap(c->db, want));
        c->mmap_bytes = want;
    }
    return CKR_OK;
}

static void conn_close(store_conn *c)
{
    for (size_t i = 0; i < ARRAY_LEN(c->stmt); i++) {
        sqlite3_finalize(c->stmt[i]);
        c->stmt[i] = NULL;
    }
    for (size_t i = 0; i < ARRAY_LEN(c->find); i++) {
        sqlite3_finalize(c->find[i]);
        c->find[i] = NULL;
        sqlite3_finalize(c->scan[i]);
        c->scan[i] = NULL;
    }
    sqlite3_close_v2(c->db);
    c->db = NULL;
}

CK_RV store_set_mmap(store *st, uint64_t bytes)
{
    ENSURE(st != NULL && bytes <= STORE_MMAP_MAX, CKR_ARGUMENTS_BAD);
    lock(st);
    __atomic_store_n(&st->mmap_bytes, bytes, __ATOMIC_RELAXED);
    /* Readers take the new size when next used (conn_ready). */
    CK_RV rv = st->c.db != NULL ? conn_ready(st, &st->c) : CKR_OK;
    unlock(st);
    return rv;
}

/* The cached statement `id` of connection c, prepared on first use. */
static CK_RV conn_stmt(store *st, store_conn *c, enum store_stmt id, sqlite3_stmt **out)
{
    GUARD(conn_ready(st, c));
    if (c->stmt[id] == NULL) {
        int rc = sqlite3_prepare_v3(c->db, STMT_SQL[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->stmt[id], NULL);
        if (rc != SQLITE_OK)
            return store_sqlite_rv(rc);
    }
    *out = c->stmt[id];
    return CKR_OK;
}

static CK_RV stmt(store *st, enum store_stmt id, sqlite3_stmt **out)
{
    return conn_stmt(st, &st->c, id, out);
}

/* A free reader, marked busy; NULL when all are in use. */
static store_conn *reader_take(store *st)
{
    store_conn *c = NULL;
    pthread_mutex_lock(&st->rlock);
    for (size_t i = 0; i < STORE_READERS && c == NULL && !st->rclosing; i++) {
        if (!st->rbusy[i]) {
            st->rbusy[i] = true;
            c = &st->readers[i];
        }
    }
    pthread_mutex_unlock(&st->rlock);
    return c;
}

static void reader_give(store *st, store_conn *c)
{
    pthread_mutex_lock(&st->rlock);
    st->rbusy[c - st->readers] = false;
    pthread_cond_broadcast(&st->ridle);
    pthread_mutex_unlock(&st->rlock);
}

static CK_RV bind_rc(int rc)
{
    return rc == SQLITE_OK ? CKR_OK : store_sqlite_rv(rc);
}

/* Bytes bound without a copy (SQLITE_STATIC): the caller keeps them alive
 * until the statement is reset. A zero length binds an empty blob, not NULL. */
static CK_RV bind_blob(sqlite3_stmt *s, int i, const void *p, size_t len)
{
    static const uint8_t empty[1];
    return bind_rc(sqlite3_bind_blob64(s, i, len ? p : empty, len, SQLITE_STATIC));
}

static CK_RV bind_text(sqlite3_stmt *s, int i, const char *p)
{
    return bind_rc(sqlite3_bind_text64(s, i, p, strlen(p), SQLITE_STATIC, SQLITE_UTF8));
}

static CK_RV bind_int(sqlite3_stmt *s, int i, int64_t v)
{
    return bind_rc(sqlite3_bind_int64(s, i, v));
}

/* Step a statement that returns no row, then reset it. */
static CK_RV run(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? CKR_OK : store_sqlite_rv(rc);
}

static CK_RV conn_run_id(store *st, store_conn *c, enum store_stmt id)
{
    sqlite3_stmt *s = NULL;
    GUARD(conn_stmt(st, c, id, &s));
    return run(s);
}

static CK_RV run_id(store *st, enum store_stmt id)
{
    return conn_run_id(st, &st->c, id);
}

/* BEGIN IMMEDIATE takes the write lock up front: a writer waits (busy
 * timeout) at the start instead of failing with SQLITE_BUSY half-way. */
static CK_RV begin_write(store *st)
{
    return run_id(st, S_BEGIN_IMMEDIATE);
}

static CK_RV commit(store *st)
{
    return run_id(st, S_COMMIT);
}

/* End whatever transaction is still open (SQLite may already have rolled it
 * back itself after an I/O error or SQLITE_FULL). */
static void conn_rollback(store *st, store_conn *c)
{
    if (c->db == NULL || sqlite3_get_autocommit(c->db))
        return;
    if (conn_run_id(st, c, S_ROLLBACK) != CKR_OK)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

static void rollback(store *st)
{
    conn_rollback(st, &st->c);
}

static bool name_ok(const char *name)
{
    size_t n;
    if (name == NULL)
        return false;
    n = strnlen(name, sizeof(((store_user *)0)->name));
    return n > 0 && n < sizeof(((store_user *)0)->name);
}

static bool label_ok(const char *label)
{
    return label != NULL && strnlen(label, sizeof(((store_token_info *)0)->label)) <
                                sizeof(((store_token_info *)0)->label);
}

static bool serial_ok(const char *serial)
{
    size_t n = strnlen(serial, 17);
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)serial[i]))
            return false;
    return n == 16;
}

/* ---- opening ------------------------------------------------------------ */

static CK_RV exec_open(sqlite3 *db, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? CKR_OK : store_sqlite_open_rv(rc);
}

/* The first statement to read the file: garbage shows up here as NOTADB. */
static CK_RV set_wal(sqlite3 *db, CK_RV (*map)(int rc))
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    ENSURE_OUT(rc == SQLITE_OK, map(rc));
    /* Switching a new file to WAL takes an exclusive lock for a moment, and
     * another process doing the same meanwhile gets SQLITE_BUSY at once:
     * SQLite calls no busy handler there. Two processes opening a token's
     * new audit file together made one of them run without an audit trail.
     * Try again, for as long as a writer would wait for a lock. */
    for (unsigned waited_ms = 0;; waited_ms++) {
        rc = sqlite3_step(s);
        if ((rc & 0xff) != SQLITE_BUSY || waited_ms >= STORE_BUSY_TIMEOUT_MS)
            break;
        sqlite3_reset(s);
        struct timespec ms = { 0, 1000000L };
        nanosleep(&ms, NULL);
    }
    ENSURE_OUT(rc == SQLITE_ROW, map(rc));
    /* WAL is refused on file systems without shared memory; the concurrency
     * rules of docs/store-format.md need it. */
    ENSURE_OUT(sqlite3_column_text(s, 0) != NULL &&
                   strcmp((const char *)sqlite3_column_text(s, 0), "wal") == 0,
               CKR_DEVICE_ERROR);
    rv = CKR_OK;
out:
    sqlite3_finalize(s);
    return rv;
}

CK_RV store_connect(const char *path, int flags, bool triggers, CK_RV (*map)(int rc),
                    sqlite3 **out)
{
    sqlite3 *db = NULL;
    CK_RV rv;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    ENSURE_OUT(rc == SQLITE_OK, rc == SQLITE_NOMEM ? CKR_HOST_MEMORY : CKR_DEVICE_ERROR);
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, triggers ? 1 : 0, NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_VIEW, 0, NULL);
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    GUARD_OUT(set_wal(db, map));
    /* FULL: a commit is on disk (WAL fsync'ed) before it returns. */
    rc = sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    ENSURE_OUT(rc == SQLITE_OK, map(rc));
    *out = db;
    db = NULL;
out:
    sqlite3_close_v2(db);
    return rv;
}

/* Open a connection to a token file with the settings every connection
 * needs (store_connect; triggers off: the token's schema has none, and a
 * file from elsewhere must not run any), plus foreign keys and
 * secure_delete: freed cells, including old sealed blobs, are zeroed. */
static CK_RV connect_db(const char *path, int flags, sqlite3 **out)
{
    sqlite3 *db = NULL;
    CK_RV rv;
    GUARD(store_connect(path, flags, false, store_sqlite_open_rv, &db));
    GUARD_OUT(exec_open(db, "PRAGMA foreign_keys = ON;"
                            "PRAGMA secure_delete = ON;" CACHE_PRAGMA));
    *out = db;
    db = NULL;
out:
    sqlite3_close_v2(db);
    return rv;
}

/* Every open store, so that a fork can close their connections first. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static store *registry;

static CK_RV store_new(sqlite3 *db, const char *path, store **out)
{
    store *st = calloc(1, sizeof(*st));
    ENSURE(st != NULL, CKR_HOST_MEMORY);
    st->path = strdup(path);
    if (st->path == NULL || pthread_mutex_init(&st->lock, NULL) != 0) {
        free(st->path);
        free(st);
        return CKR_HOST_MEMORY;
    }
    if (pthread_mutex_init(&st->rlock, NULL) != 0) {
        pthread_mutex_destroy(&st->lock);
        free(st->path);
        free(st);
        return CKR_HOST_MEMORY;
    }
    if (pthread_cond_init(&st->ridle, NULL) != 0) {
        pthread_mutex_destroy(&st->rlock);
        pthread_mutex_destroy(&st->lock);
        free(st->path);
        free(st);
        return CKR_HOST_MEMORY;
    }
    st->c.db = db;
    pthread_mutex_lock(&registry_lock);
    st->next_open = registry;
    registry = st;
    pthread_mutex_unlock(&registry_lock);
    *out = st;
    return CKR_OK;
}

static void unregister(store *st)
{
    pthread_mutex_lock(&registry_lock);
    for (store **pp = &registry; *pp != NULL; pp = &(*pp)->next_open) {
        if (*pp == st) {
            *pp = st->next_open;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

static void disconnect(store *st)
{
    conn_close(&st->c);
}

/* With rlock held: wait until no reader is in use, then close them all
 * (the store's lock keeps new searches on the main connection meanwhile,
 * or waiting for rlock). */
static void readers_close_locked(store *st)
{
    /* New searches go to the main connection (whose lock the caller holds)
     * instead of keeping a reader busy forever. */
    st->rclosing = true;
    for (;;) {
        bool busy = false;
        for (size_t i = 0; i < STORE_READERS; i++)
            busy = busy || st->rbusy[i];
        if (!busy)
            break;
        pthread_cond_wait(&st->ridle, &st->rlock);
    }
    for (size_t i = 0; i < STORE_READERS; i++)
        conn_close(&st->readers[i]);
    st->rclosing = false;
}

void store_fork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (store *st = registry; st != NULL; st = st->next_open) {
        pthread_mutex_lock(&st->lock);
        disconnect(st);
        pthread_mutex_lock(&st->rlock);
        readers_close_locked(st);
    }
}

void store_fork_release(void)
{
    for (store *st = registry; st != NULL; st = st->next_open) {
        pthread_mutex_unlock(&st->rlock);
        pthread_mutex_unlock(&st->lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

/* Cache the serial for the AADs; a file migrated up from an empty one has
 * no token row and so no serial. */
static CK_RV load_serial(store *st)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    const unsigned char *serial;
    int rc;

    GUARD(stmt(st, S_TOKEN_GET, &s));
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_open_rv(rc));
    rv = CKR_OK;
    if (rc == SQLITE_DONE)
        goto out;
    serial = sqlite3_column_text(s, 1);
    ENSURE_OUT(serial != NULL && serial_ok((const char *)serial), CKR_TOKEN_NOT_RECOGNIZED);
    memcpy(st->serial, serial, 16);
    st->serial[16] = '\0';
out:
    sqlite3_reset(s);
    return rv;
}

CK_RV store_open(const char *path, store **out)
{
    sqlite3 *db = NULL;
    store *st = NULL;
    CK_RV rv;

    ENSURE(path != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    *out = NULL;
    GUARD(connect_db(path, SQLITE_OPEN_READWRITE, &db));
    GUARD_OUT(store_migrate(db));
    GUARD_OUT(store_schema_check(db));
    GUARD_OUT(store_new(db, path, &st));
    db = NULL;
    GUARD_OUT(load_serial(st));
    *out = st;
    st = NULL;
out:
    store_close(st);
    sqlite3_close_v2(db);
    return rv;
}

/* ---- creating ----------------------------------------------------------- */

static CK_RV user_put_locked(store *st, const store_user *u)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    GUARD(stmt(st, S_USER_PUT, &s));
    GUARD_OUT(bind_text(s, 1, u->name));
    GUARD_OUT(bind_int(s, 2, (int64_t)u->type));
    GUARD_OUT(bind_int(s, 3, u->roles));
    GUARD_OUT(bind_int(s, 4, (int64_t)u->kdf.alg));
    GUARD_OUT(bind_int(s, 5, u->kdf.p1));
    GUARD_OUT(bind_int(s, 6, u->kdf.p2));
    GUARD_OUT(bind_int(s, 7, u->kdf.p3));
    GUARD_OUT(bind_blob(s, 8, u->salt, sizeof(u->salt)));
    GUARD_OUT(bind_blob(s, 9, u->sealed_mk, sizeof(u->sealed_mk)));
    GUARD_OUT(bind_int(s, 10, u->failures));
    GUARD_OUT(bind_int(s, 11, u->flags));
    if (u->has_lookup)
        GUARD_OUT(bind_blob(s, 12, u->lookup, sizeof(u->lookup)));
    else
        GUARD_OUT(bind_rc(sqlite3_bind_null(s, 12)));
    {
        int rc = sqlite3_step(s);
        /* The only constraint a valid row can break: users_lookup. */
        rv = rc == SQLITE_DONE ? CKR_OK
             : (rc & 0xff) == SQLITE_CONSTRAINT ? CKR_PIN_INVALID
                                                : store_sqlite_rv(rc);
    }
out:
    sqlite3_reset(s);
    return rv;
}

static CK_RV token_insert_locked(store *st, const store_token_info *info)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    GUARD(stmt(st, S_TOKEN_INSERT, &s));
    GUARD_OUT(bind_text(s, 1, info->label));
    GUARD_OUT(bind_text(s, 2, info->serial));
    GUARD_OUT(bind_int(s, 3, info->created));
    rv = run(s);
out:
    sqlite3_reset(s);
    return rv;
}

/* A new file's directory entry must survive a crash too: fsync the parent
 * directory once the file is complete. */
static CK_RV sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int fd;
    CK_RV rv = CKR_OK;

    if (slash == NULL)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    ENSURE(dir != NULL, CKR_HOST_MEMORY);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        rv = CKR_DEVICE_ERROR;
    if (fd >= 0)
        close(fd);
    free(dir);
    return rv;
}

/* Remove a file store_create made and could not finish. */
static void unlink_all(const char *path)
{
    static const char *const SUFFIX[] = { "", "-wal", "-shm" };
    size_t n = strlen(path);
    char *p = malloc(n + 5);
    if (p == NULL) {
        unlink(path);
        return;
    }
    for (size_t i = 0; i < ARRAY_LEN(SUFFIX); i++) {
        memcpy(p, path, n);
        strcpy(p + n, SUFFIX[i]);
        unlink(p);
    }
    free(p);
}

CK_RV store_create(const char *path, const store_token_info *info, const store_user *so,
                   store **out)
{
    sqlite3 *db = NULL;
    store *st = NULL;
    bool made = false;
    CK_RV rv;
    int fd;

    ENSURE(path != NULL && info != NULL && so != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(label_ok(info->label) && serial_ok(info->serial) && name_ok(so->name),
           CKR_ARGUMENTS_BAD);
    *out = NULL;
    /* O_EXCL: never build a token over an existing file, whatever it is
     * (SQLITE_OPEN_EXCLUSIVE is not that). 0600: the file holds sealed
     * keys; SQLite gives -wal and -shm the same mode. */
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    ENSURE(fd >= 0, CKR_DEVICE_ERROR);
    close(fd);
    made = true;
    GUARD_OUT(connect_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &db));
    GUARD_OUT(store_new(db, path, &st));
    db = NULL;
    /* Schema, token row and SO user in one transaction: a crash leaves
     * either an empty file (store_open: no token row) or a whole token. */
    GUARD_OUT(begin_write(st));
    GUARD_OUT(store_schema_build_locked(st->c.db));
    GUARD_OUT(token_insert_locked(st, info));
    GUARD_OUT(user_put_locked(st, so));
    GUARD_OUT(commit(st));
    GUARD_OUT(sync_parent(path));
    memcpy(st->serial, info->serial, sizeof(st->serial));
    *out = st;
    st = NULL;
out:
    if (st != NULL)
        rollback(st);
    store_close(st);
    sqlite3_close_v2(db);
    if (rv != CKR_OK && made)
        unlink_all(path);
    return rv;
}

/* ---- closing -------------------------------------------------------------- */

void store_close(store *st)
{
    if (st == NULL)
        return;
    unregister(st);
    disconnect(st);
    pthread_mutex_lock(&st->rlock);
    readers_close_locked(st);
    pthread_mutex_unlock(&st->rlock);
    pthread_cond_destroy(&st->ridle);
    pthread_mutex_destroy(&st->rlock);
    pthread_mutex_destroy(&st->lock);
    free(st->scratch);
    free(st->path);
    free(st);
}

/* Stores dropped by store_forget_after_fork, chained through ->forgotten:
 * kept reachable so that leak checkers in a child report them as still in
 * use rather than lost. */
static store *forgotten;

/* SQLite forbids carrying a connection across fork(): the child shares the
 * parent's file descriptors and SQLite's record of its locks but not the
 * POSIX locks themselves, so finalizing or closing there could checkpoint,
 * truncate or delete the -wal the parent is still using. The child therefore
 * leaks the connection and its statements on purpose. The mutex is not
 * destroyed either: a thread that does not exist in the child may have held
 * it at fork. The push is lock-free for the same reason. */
void store_forget_after_fork(store *st)
{
    if (st == NULL)
        return;
    free(st->scratch);
    st->scratch = NULL;
    st->scratch_cap = 0;
    st->forgotten = __atomic_load_n(&forgotten, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&forgotten, &st->forgotten, st, true,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
}

/* ---- token ---------------------------------------------------------------- */

CK_RV store_token_get(store *st, store_token_info *out)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    const unsigned char *label, *serial;
    size_t n;
    int rc;

    ENSURE(st != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    memset(out, 0, sizeof(*out));
    lock(st);
    GUARD_OUT(stmt(st, S_TOKEN_GET, &s));
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
    /* No token row: a file that was migrated up from empty, never created. */
    ENSURE_OUT(rc == SQLITE_ROW, CKR_TOKEN_NOT_RECOGNIZED);
    label = sqlite3_column_text(s, 0);
    serial = sqlite3_column_text(s, 1);
    ENSURE_OUT(label != NULL && serial != NULL, CKR_HOST_MEMORY);
    n = (size_t)sqlite3_column_bytes(s, 0);
    ENSURE_OUT(n < sizeof(out->label), CKR_DEVICE_ERROR);
    memcpy(out->label, label, n);
    ENSURE_OUT(serial_ok((const char *)serial), CKR_DEVICE_ERROR);
    memcpy(out->serial, serial, 16);
    out->created = sqlite3_column_int64(s, 2);
    rv = CKR_OK;
out:
    sqlite3_reset(s);
    unlock(st);
    return rv;
}

CK_RV store_reinit(store *st, const char *label, const store_user *so)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;

    ENSURE(st != NULL && so != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(label_ok(label) && name_ok(so->name), CKR_ARGUMENTS_BAD);
    lock(st);
    GUARD_OUT(begin_write(st));
    /* attrs first: one pass over the table instead of one cascade per object.
     * The AUTOINCREMENT counter stays, so old handles are never reused. */
    GUARD_OUT(run_id(st, S_ATTRS_DELETE));
    GUARD_OUT(run_id(st, S_OBJS_DELETE));
    GUARD_OUT(run_id(st, S_USERS_DELETE));
    GUARD_OUT(stmt(st, S_TOKEN_SET_LABEL, &s));
    GUARD_OUT(bind_text(s, 1, label));
    GUARD_OUT(run(s));
    ENSURE_OUT(sqlite3_changes(st->c.db) == 1, CKR_TOKEN_NOT_RECOGNIZED);
    GUARD_OUT(user_put_locked(st, so));
    GUARD_OUT(commit(st));
out:
    sqlite3_reset(s);
    if (rv != CKR_OK)
        rollback(st);
    unlock(st);
    return rv;
}

/* A statement without parameters that answers one number. */
static CK_RV scalar_u64(store *st, enum store_stmt id, uint64_t *out)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    int rc;

    ENSURE(st != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    lock(st);
    GUARD_OUT(stmt(st, id, &s));
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW, store_sqlite_rv(rc));
    *out = (uint64_t)sqlite3_column_int64(s, 0);
    rv = CKR_OK;
out:
    sqlite3_reset(s);
    unlock(st);
    return rv;
}

CK_RV store_data_version(store *st, uint64_t *out)
{
    return scalar_u64(st, S_DATA_VERSION, out);
}

CK_RV store_synchronous(store *st, uint64_t *level)
{
    return scalar_u64(st, S_SYNC_GET, level);
}

/* ---- users ------------------------------------------------------------------ */

CK_RV store_user_get(store *st, const char *name, store_user *out)
{
    sqlite3_stmt *s = NULL;
    const void *salt, *sealed;
    CK_RV rv;
    int rc;

    ENSURE(st != NULL && out != NULL && name_ok(name), CKR_ARGUMENTS_BAD);
    memset(out, 0, sizeof(*out));
    lock(st);
    GUARD_OUT(stmt(st, S_USER_GET, &s));
    GUARD_OUT(bind_text(s, 1, name));
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
    ENSURE_OUT(rc == SQLITE_ROW, CKR_USER_PIN_NOT_INITIALIZED);
    salt = sqlite3_column_blob(s, 6);
    sealed = sqlite3_column_blob(s, 7);
    ENSURE_OUT(salt != NULL && sqlite3_column_bytes(s, 6) == sizeof(out->salt) &&
                   sealed != NULL && sqlite3_column_bytes(s, 7) == sizeof(out->sealed_mk),
               CKR_DEVICE_ERROR);
    strcpy(out->name, name);
    out->type = (CK_USER_TYPE)sqlite3_column_int64(s, 0);
    out->roles = (uint32_t)sqlite3_column_int64(s, 1);
    out->kdf.alg = (crypto_kdf_alg)sqlite3_column_int(s, 2);
    out->kdf.p1 = (uint32_t)sqlite3_column_int64(s, 3);
    out->kdf.p2 = (uint32_t)sqlite3_column_int64(s, 4);
    out->kdf.p3 = (uint32_t)sqlite3_column_int64(s, 5);
    memcpy(out->salt, salt, sizeof(out->salt));
    memcpy(out->sealed_mk, sealed, sizeof(out->sealed_mk));
    out->failures = (uint32_t)sqlite3_column_int64(s, 8);
    out->flags = (uint32_t)sqlite3_column_int64(s, 9);
    if (sqlite3_column_type(s, 10) == SQLITE_BLOB && sqlite3_column_bytes(s, 10) == sizeof(out->lookup)) {
        memcpy(out->lookup, sqlite3_column_blob(s, 10), sizeof(out->lookup));
        out->has_lookup = true;
    }
    rv = CKR_OK;
out:
    sqlite3_reset(s);
    unlock(st);
    return rv;
}

CK_RV store_user_put(store *st, const store_user *u)
{
    CK_RV rv;
    ENSURE(st != NULL && u != NULL && name_ok(u->name), CKR_ARGUMENTS_BAD);
    lock(st);
    rv = user_put_locked(st, u);
    unlock(st);
    return rv;
}

CK_RV store_user_fail(store *st, const char *name, uint32_t *failures)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    int rc;

    ENSURE(st != NULL && failures != NULL && name_ok(name), CKR_ARGUMENTS_BAD);
    lock(st);
    GUARD_OUT(stmt(st, S_USER_FAIL, &s));
    GUARD_OUT(bind_text(s, 1, name));
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
    ENSURE_OUT(rc == SQLITE_ROW, CKR_USER_PIN_NOT_INITIALIZED);
    *failures = (uint32_t)sqlite3_column_int64(s, 0);
    /* The autocommit transaction commits when the statement completes. */
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_DONE, store_sqlite_rv(rc));
    rv = CKR_OK;
out:
    sqlite3_reset(s);
    unlock(st);
    return rv;
}

CK_RV store_user_reset_failures(store *st, const char *name)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    int rc;
    bool zero;

    ENSURE(st != NULL && name_ok(name), CKR_ARGUMENTS_BAD);
    lock(st);
    /* Read first: a successful login must not wait for the write lock, nor
     * write a WAL frame, when there is nothing to reset. */
    GUARD_OUT(stmt(st, S_USER_FAILURES, &s));
    GUARD_OUT(bind_text(s, 1, name));
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
    ENSURE_OUT(rc == SQLITE_ROW, CKR_USER_PIN_NOT_INITIALIZED);
    zero = sqlite3_column_int64(s, 0) == 0;
    sqlite3_reset(s);
    rv = CKR_OK;
    if (zero)
        goto out;
    GUARD_OUT(stmt(st, S_USER_RESET, &s));
    GUARD_OUT(bind_text(s, 1, name));
    rv = run(s);
out:
    sqlite3_reset(s);
    unlock(st);
    return rv;
}

/* ---- objects ------------------------------------------------------------------ */

static CK_RV check_attrs(const uint8_t *mk, const store_attr *attrs, size_t n)
{
    ENSURE(attrs != NULL || n == 0, CKR_ARGUMENTS_BAD);
    for (size_t i = 0; i < n; i++) {
        ENSURE(attrs[i].value != NULL || attrs[i].len == 0, CKR_ARGUMENTS_BAD);
        ENSURE(attrs[i].len <= SIZE_MAX - CRYPTO_SEAL_OVERHEAD, CKR_DEVICE_MEMORY);
        /* Secrets are sealed under the master key, which exists only
         * after a login. */
        ENSURE(!attrs[i].secret || mk != NULL, CKR_USER_NOT_LOGGED_IN);
    }
    return CKR_OK;
}

static CK_RV scratch_reserve(store *st, size_t need)
{
    uint8_t *p;
    if (st->scratch_cap >= need)
        return CKR_OK;
    p = realloc(st->scratch, need);
    ENSURE(p != NULL, CKR_HOST_MEMORY);
    st->scratch = p;
    st->scratch_cap = need;
    return CKR_OK;
}

/* Write (insert or replace) attrs of object h, sealing the secret ones;
 * the caller holds the lock and a write transaction. */
static CK_RV put_attrs_locked(store *st, const uint8_t *mk, CK_OBJECT_HANDLE h,
                              const store_attr *attrs, size_t n)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv = CKR_OK;

    GUARD(stmt(st, S_ATTR_PUT, &s));
    for (size_t i = 0; i < n; i++) {
        const store_attr *a = &attrs[i];
        const uint8_t *v = a->len ? a->value : (const uint8_t *)"";
        size_t len = a->len;
        if (a->secret) {
            GUARD_OUT(scratch_reserve(st, len + CRYPTO_SEAL_OVERHEAD));
            GUARD_OUT(store_seal_attr(st->serial, mk, h, a->type, v, len, st->scratch));
            v = st->scratch;
            len += CRYPTO_SEAL_OVERHEAD;
        }
        GUARD_OUT(bind_int(s, 1, (int64_t)h));
        GUARD_OUT(bind_int(s, 2, (int64_t)a->type));
        GUARD_OUT(bind_blob(s, 3, v, len));
        GUARD_OUT(bind_int(s, 4, a->secret ? 1 : 0));
        GUARD_OUT(run(s));
    }
out:
    sqlite3_reset(s);
    return rv;
}

/* The audit record of a change to object h, into the outbox, inside the
 * change's own transaction (rec NULL: nothing). */
static CK_RV outbox_put_locked(store *st, store_audit_rec *rec, CK_OBJECT_HANDLE h)
{
    sqlite3_stmt *s = NULL;
    uint8_t packed[AUDIT_PACKED_MAX];
    size_t plen;
    if (rec == NULL)
        return CKR_OK;
    if (rec->names_object)
        rec->row.key_handle = (int64_t)((CK_OBJECT_HANDLE)rec->row.key_handle | h);
    plen = audit_row_pack(&rec->row, packed, sizeof(packed));
    ENSURE(plen > 0, CKR_GENERAL_ERROR);
    GUARD(stmt(st, S_OUTBOX_PUT, &s));
    GUARD(bind_blob(s, 1, packed, plen));
    return run(s);
}

/* Inside the caller's write transaction: the object row, then its
 * attributes, then (rec != NULL) its audit record. The handle is bound into
 * every sealed value's AAD, so it must be known before sealing: the row
 * comes first. */
static CK_RV insert_object_locked(store *st, const uint8_t *mk, const store_attr *attrs, size_t n,
                                  store_audit_rec *rec, CK_OBJECT_HANDLE *out)
{
    sqlite3_stmt *s = NULL;
    GUARD(stmt(st, S_OBJ_INSERT, &s));
    GUARD(bind_int(s, 1, (int64_t)time(NULL)));
    GUARD(run(s));
    *out = (CK_OBJECT_HANDLE)sqlite3_last_insert_rowid(st->c.db);
    GUARD(put_attrs_locked(st, mk, *out, attrs, n));
    return outbox_put_locked(st, rec, *out);
}

CK_RV store_object_insert(store *st, const uint8_t *mk, const store_attr *attrs, size_t n,
                          CK_OBJECT_HANDLE *out)
{
    return store_object_insert_audited(st, mk, attrs, n, NULL, out);
}

CK_RV store_object_insert_audited(store *st, const uint8_t *mk, const store_attr *attrs,
                                  size_t n, store_audit_rec *rec, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_HANDLE h;
    CK_RV rv;

    ENSURE(st != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    GUARD(check_attrs(mk, attrs, n));
    lock(st);
    GUARD_OUT(begin_write(st));
    GUARD_OUT(insert_object_locked(st, mk, attrs, n, rec, &h));
    GUARD_OUT(commit(st));
    *out = h;
out:
    if (rv != CKR_OK)
        rollback(st);
    unlock(st);
    return rv;
}

static bool handle_ok(CK_OBJECT_HANDLE h)
{
    return h != CK_INVALID_HANDLE && h <= (CK_OBJECT_HANDLE)INT64_MAX;
}

void store_object_release(store_object *o)
{
    if (o == NULL)
        return;
    for (size_t i = 0; i < o->n; i++)
        free(o->attrs[i].value);
    free(o->attrs);
    memset(o, 0, sizeof(*o));
}

static CK_RV load_row(sqlite3_stmt *s, store_object *o, size_t *cap)
{
    store_attr *a;
    size_t len = (size_t)sqlite3_column_bytes(s, 1);
    const void *v = sqlite3_column_blob(s, 1);

    if (o->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        store_attr *p = realloc(o->attrs, ncap * sizeof(*p));
        ENSURE(p != NULL, CKR_HOST_MEMORY);
        o->attrs = p;
        *cap = ncap;
    }
    a = &o->attrs[o->n];
    memset(a, 0, sizeof(*a));
    a->type = (CK_ATTRIBUTE_TYPE)sqlite3_column_int64(s, 0);
    a->secret = sqlite3_column_int(s, 2) != 0;
    a->len = len;
    if (len > 0) {
        ENSURE(v != NULL, CKR_HOST_MEMORY);
        a->value = malloc(len);
        ENSURE(a->value != NULL, CKR_HOST_MEMORY);
        memcpy(a->value, v, len);
    }
    o->n++;
    return CKR_OK;
}

CK_RV store_object_load(store *st, CK_OBJECT_HANDLE h, store_object *out)
{
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    bool found = false;
    CK_RV rv;
    int rc;

    ENSURE(st != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    memset(out, 0, sizeof(*out));
    ENSURE(handle_ok(h), CKR_OBJECT_HANDLE_INVALID);
    lock(st);
    GUARD_OUT(stmt(st, S_OBJ_LOAD, &s));
    GUARD_OUT(bind_int(s, 1, (int64_t)h));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        found = true;
        if (sqlite3_column_type(s, 0) != SQLITE_NULL)
            GUARD_OUT(load_row(s, out, &cap));
    }
    ENSURE_OUT(rc == SQLITE_DONE, store_sqlite_rv(rc));
    ENSURE_OUT(found, CKR_OBJECT_HANDLE_INVALID);
    out->handle = h;
    rv = CKR_OK;
out:
    sqlite3_reset(s);
    unlock(st);
    if (rv != CKR_OK)
        store_object_release(out);
    return rv;
}

CK_RV store_object_update(store *st, const uint8_t *mk, CK_OBJECT_HANDLE h,
                          const store_attr *attrs, size_t n)
{
    return store_object_update_audited(st, mk, h, attrs, n, NULL);
}

CK_RV store_object_update_audited(store *st, const uint8_t *mk, CK_OBJECT_HANDLE h,
                                  const store_attr *attrs, size_t n, store_audit_rec *rec)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    int rc;

    ENSURE(st != NULL, CKR_ARGUMENTS_BAD);
    GUARD(check_attrs(mk, attrs, n));
    ENSURE(handle_ok(h), CKR_OBJECT_HANDLE_INVALID);
    lock(st);
    GUARD_OUT(begin_write(st));
    GUARD_OUT(stmt(st, S_OBJ_EXISTS, &s));
    GUARD_OUT(bind_int(s, 1, (int64_t)h));
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
    ENSURE_OUT(rc == SQLITE_ROW, CKR_OBJECT_HANDLE_INVALID);
    GUARD_OUT(put_attrs_locked(st, mk, h, attrs, n));
    GUARD_OUT(outbox_put_locked(st, rec, h));
    GUARD_OUT(commit(st));
out:
    if (rv != CKR_OK)
        rollback(st);
    unlock(st);
    return rv;
}

CK_RV store_object_delete(store *st, CK_OBJECT_HANDLE h)
{
    return store_object_delete_audited(st, h, NULL);
}

CK_RV store_object_delete_audited(store *st, CK_OBJECT_HANDLE h, store_audit_rec *rec)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;

    ENSURE(st != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(handle_ok(h), CKR_OBJECT_HANDLE_INVALID);
    lock(st);
    /* The attrs go with the object (ON DELETE CASCADE) and secure_delete
     * zeroes their cells; the record of the delete goes in the same
     * transaction. */
    GUARD_OUT(begin_write(st));
    GUARD_OUT(stmt(st, S_OBJ_DELETE, &s));
    GUARD_OUT(bind_int(s, 1, (int64_t)h));
    GUARD_OUT(run(s));
    ENSURE_OUT(sqlite3_changes(st->c.db) == 1, CKR_OBJECT_HANDLE_INVALID);
    GUARD_OUT(outbox_put_locked(st, rec, h));
    GUARD_OUT(commit(st));
out:
    sqlite3_reset(s);
    if (rv != CKR_OK)
        rollback(st);
    unlock(st);
    return rv;
}

CK_RV store_object_count(store *st, uint64_t *out)
{
    return scalar_u64(st, S_OBJ_COUNT, out);
}

/* ---- finding ------------------------------------------------------------------ */

const CK_ATTRIBUTE_TYPE STORE_UNINDEXED[21] = {
    CKA_TOKEN, CKA_TRUSTED, CKA_SENSITIVE, CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP, CKA_UNWRAP,
    CKA_SIGN, CKA_SIGN_RECOVER, CKA_VERIFY, CKA_VERIFY_RECOVER, CKA_DERIVE, CKA_EXTRACTABLE,
    CKA_LOCAL, CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_MODIFIABLE, CKA_COPYABLE,
    CKA_DESTROYABLE, CKA_ALWAYS_AUTHENTICATE, CKA_WRAP_WITH_TRUSTED,
};

bool store_type_indexed(CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < ARRAY_LEN(STORE_UNINDEXED); i++)
        if (STORE_UNINDEXED[i] == type)
            return false;
    return true;
}

/* How well a term is likely to narrow a search: terms the index leaves out
 * (unindexed types, empty values) last, then other broad types, then the
 * longer the value the rarer (a label or an id beats a CK_ULONG). */
static size_t narrowness(const CK_ATTRIBUTE *t)
{
    if (!store_type_indexed(t->type) || t->ulValueLen == 0)
        return 0;
    for (size_t i = 0; i < ARRAY_LEN(BROAD); i++)
        if (BROAD[i] == t->type)
            return 1;
    return 2 + (size_t)(t->ulValueLen < 0xffff ? t->ulValueLen : 0xffff);
}

/* order[] = indices of tmpl, most narrowing first (stable insertion sort;
 * templates are short). */
static void rank_terms(const CK_ATTRIBUTE *tmpl, size_t n, size_t *order)
{
    for (size_t i = 0; i < n; i++) {
        size_t j = i, w = narrowness(&tmpl[i]);
        while (j > 0 && narrowness(&tmpl[order[j - 1]]) < w) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

/* Does the search walk the objects: no term of the k ranked first is in
 * the index (an unindexed type or an empty value)? */
static bool walks_objects(const CK_ATTRIBUTE *tmpl, const size_t *order, size_t k)
{
    return k > 0 && narrowness(&tmpl[order[0]]) == 0;
}

/* The n-term search (1 <= n <= STORE_FIND_TERMS), prepared once: the first
 * term walks the partial index attrs_find (in handle order, so ORDER BY
 * costs nothing); each further term is one primary-key probe per candidate.
 * CROSS JOIN pins that nesting order, which rank_terms chose. This beats an
 * INTERSECT of n index scans, which reads every match of every term (every
 * secret key, for CKA_CLASS) to return one. */
static bool append(char *buf, size_t cap, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* snprintf at buf + *off; false (and *off unchanged) when it does not fit. */
static bool append(char *buf, size_t cap, size_t *off, const char *fmt, ...)
{
    va_list ap;
    int w;
    va_start(ap, fmt);
    w = vsnprintf(buf + *off, cap - *off, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= cap - *off)
        return false;
    *off += (size_t)w;
    return true;
}

/* Side values (store_find_with) are read by the find statement itself, one
 * primary-key probe per hit, bound to these parameter numbers (above every
 * term's): a search and what is needed to filter its hits in one statement,
 * one read transaction. Unbound (NULL) types select nothing. */
#define SIDE_PARAM (2 * STORE_FIND_TERMS + 1)

static CK_RV find_stmt(store *st, store_conn *c, size_t n, bool scan, sqlite3_stmt **out)
{
    sqlite3_stmt **slot = scan ? &c->scan[n] : &c->find[n];
    char sql[3072];
    size_t off = 0;
    bool ok;
    int rc;

    /* A reader not used yet, or any connection after a fork: open it. */
    GUARD(conn_ready(st, c));
    if (*slot != NULL) {
        *out = *slot;
        return CKR_OK;
    }
    ok = append(sql, sizeof(sql), &off, "SELECT t0.handle");
    for (int i = 0; i < STORE_FIND_SIDE; i++)
        ok = ok && append(sql, sizeof(sql), &off,
                          ", (SELECT w.value FROM attrs AS w WHERE w.handle = t0.handle"
                          " AND w.type = ?%d AND w.sealed = 0)",
                          SIDE_PARAM + i);
    if (n == 0) {
        ok = ok && append(sql, sizeof(sql), &off, " FROM objects AS t0 ORDER BY t0.handle");
    } else if (scan) {
        /* No term the index holds: every object, each term a primary-key
         * probe (t1 for the first term, and so on). */
        ok = ok && append(sql, sizeof(sql), &off, " FROM objects AS t0");
        for (size_t i = 1; i <= n; i++)
            ok = ok && append(sql, sizeof(sql), &off, " CROSS JOIN attrs AS t%zu", i);
        for (size_t i = 1; i <= n; i++)
            ok = ok && append(sql, sizeof(sql), &off,
                              "%s t%zu.handle = t0.handle AND t%zu.type = ?%zu"
                              " AND +t%zu.value = ?%zu AND t%zu.sealed = 0",
                              i == 1 ? " WHERE" : " AND", i, i, 2 * i - 1, i, 2 * i, i);
        ok = ok && append(sql, sizeof(sql), &off, " ORDER BY t0.handle");
    } else {
        ok = ok && append(sql, sizeof(sql), &off, " FROM attrs AS t0");
        for (size_t i = 1; i < n; i++)
            ok = ok && append(sql, sizeof(sql), &off, " CROSS JOIN attrs AS t%zu", i);
        /* The terms of the index's own WHERE (STORE_INDEX_WHERE, here on
         * t0) let SQLite use the partial index attrs_find. */
        ok = ok && append(sql, sizeof(sql), &off,
                          " WHERE t0.type = ?1 AND t0.value = ?2 AND t0.sealed = 0"
                          " AND t0.value <> x''");
        for (size_t i = 0; i < ARRAY_LEN(STORE_UNINDEXED); i++)
            ok = ok && append(sql, sizeof(sql), &off, " AND t0.type <> %lu",
                              (unsigned long)STORE_UNINDEXED[i]);
        for (size_t i = 1; i < n; i++)
            ok = ok && append(sql, sizeof(sql), &off,
                              " AND t%zu.handle = t0.handle AND t%zu.type = ?%zu"
                              " AND +t%zu.value = ?%zu AND t%zu.sealed = 0",
                              i, i, 2 * i + 1, i, 2 * i + 2, i);
        ok = ok && append(sql, sizeof(sql), &off, " ORDER BY t0.handle");
    }
    ENSURE(ok, CKR_GENERAL_ERROR);
    rc = sqlite3_prepare_v3(c->db, sql, (int)off, SQLITE_PREPARE_PERSISTENT, slot, NULL);
    ENSURE(rc == SQLITE_OK, store_sqlite_rv(rc));
    *out = *slot;
    return CKR_OK;
}

static CK_RV bind_term(sqlite3_stmt *s, int first, const CK_ATTRIBUTE *t)
{
    GUARD(bind_int(s, first, (int64_t)t->type));
    return bind_blob(s, first + 1, t->pValue, t->ulValueLen);
}

/* Do the terms order[from..n) all hold for object h? (Templates longer than
 * STORE_FIND_TERMS only.) */
static CK_RV match_rest(store *st, store_conn *c, sqlite3_int64 h, const CK_ATTRIBUTE *tmpl,
                        const size_t *order, size_t from, size_t n, bool *match)
{
    sqlite3_stmt *s = NULL;
    *match = true;
    GUARD(conn_stmt(st, c, S_ATTR_MATCH, &s));
    for (size_t i = from; i < n && *match; i++) {
        CK_RV rv = bind_int(s, 1, h);
        int rc;
        if (rv == CKR_OK)
            rv = bind_term(s, 2, &tmpl[order[i]]);
        rc = rv == CKR_OK ? sqlite3_step(s) : SQLITE_DONE;
        sqlite3_reset(s);
        GUARD(rv);
        ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
        *match = rc == SQLITE_ROW;
    }
    return CKR_OK;
}

static CK_RV push_hit(store_found *f, size_t *cap, sqlite3_stmt *s, size_t nside,
                      size_t *arena_cap)
{
    if (f->count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        store_hit *p = realloc(f->hits, ncap * sizeof(*p));
        ENSURE(p != NULL, CKR_HOST_MEMORY);
        f->hits = p;
        *cap = ncap;
    }
    store_hit *h = &f->hits[f->count];
    h->handle = (CK_OBJECT_HANDLE)sqlite3_column_int64(s, 0);
    for (size_t i = 0; i < STORE_FIND_SIDE; i++) {
        h->off[i] = 0;
        h->len[i] = STORE_SIDE_ABSENT;
        if (i >= nside || sqlite3_column_type(s, (int)i + 1) == SQLITE_NULL)
            continue;
        const void *v = sqlite3_column_blob(s, (int)i + 1);
        size_t len = (size_t)sqlite3_column_bytes(s, (int)i + 1);
        if (f->arena_len + len > *arena_cap) {
            size_t ncap = *arena_cap ? *arena_cap : 64;
            while (ncap < f->arena_len + len)
                ncap *= 2;
            uint8_t *p = realloc(f->arena, ncap);
            ENSURE(p != NULL, CKR_HOST_MEMORY);
            f->arena = p;
            *arena_cap = ncap;
        }
        if (len > 0)
            memcpy(f->arena + f->arena_len, v, len);
        h->off[i] = f->arena_len;
        h->len[i] = len;
        f->arena_len += len;
    }
    f->count++;
    return CKR_OK;
}

void store_found_free(store_found *f)
{
    if (f == NULL)
        return;
    free(f->hits);
    free(f->arena);
    memset(f, 0, sizeof(*f));
}

CK_RV store_find_with(store *st, const CK_ATTRIBUTE *tmpl, size_t n, const CK_ATTRIBUTE_TYPE *side,
                      size_t nside, store_found *out)
{
    size_t small[STORE_FIND_TERMS], *order = small;
    size_t k = n < STORE_FIND_TERMS ? n : STORE_FIND_TERMS, cap = 0, arena_cap = 0;
    store_found res = { 0 };
    sqlite3_stmt *s = NULL;
    store_conn *c = NULL, *reader = NULL;
    CK_RV rv;
    int rc;

    ENSURE(st != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(tmpl != NULL || n == 0, CKR_ARGUMENTS_BAD);
    ENSURE(nside <= STORE_FIND_SIDE && (side != NULL || nside == 0), CKR_ARGUMENTS_BAD);
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < n; i++)
        ENSURE(tmpl[i].pValue != NULL || tmpl[i].ulValueLen == 0, CKR_ARGUMENTS_BAD);
    if (n > STORE_FIND_TERMS) {
        order = calloc(n, sizeof(*order));
        ENSURE(order != NULL, CKR_HOST_MEMORY);
    }
    rank_terms(tmpl, n, order);
    /* A reader of the pool if one is free, else the main connection. */
    reader = reader_take(st);
    if (reader == NULL)
        lock(st);
    c = reader != NULL ? reader : &st->c;
    /* The rest of a long template is checked by further statements: one
     * read transaction keeps them all on one snapshot. */
    if (n > k)
        GUARD_OUT(conn_run_id(st, c, S_BEGIN_READ));
    /* Ranked first is a term the index holds, unless none is. */
    GUARD_OUT(find_stmt(st, c, k, walks_objects(tmpl, order, k), &s));
    for (size_t i = 0; i < k; i++)
        GUARD_OUT(bind_term(s, (int)(2 * i + 1), &tmpl[order[i]]));
    for (size_t i = 0; i < STORE_FIND_SIDE; i++) {
        if (i < nside)
            GUARD_OUT(bind_int(s, SIDE_PARAM + (int)i, (int64_t)side[i]));
        else
            ENSURE_OUT(sqlite3_bind_null(s, SIDE_PARAM + (int)i) == SQLITE_OK, CKR_GENERAL_ERROR);
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        bool match = true;
        if (n > k)
            GUARD_OUT(match_rest(st, c, sqlite3_column_int64(s, 0), tmpl, order, k, n, &match));
        if (match)
            GUARD_OUT(push_hit(&res, &cap, s, nside, &arena_cap));
    }
    ENSURE_OUT(rc == SQLITE_DONE, store_sqlite_rv(rc));
    sqlite3_reset(s);
    s = NULL;
    if (n > k)
        GUARD_OUT(conn_run_id(st, c, S_COMMIT));
    *out = res;
    memset(&res, 0, sizeof(res));
out:
    sqlite3_reset(s);
    if (c != NULL && rv != CKR_OK)
        conn_rollback(st, c);
    if (reader != NULL)
        reader_give(st, reader);
    else if (c != NULL)
        unlock(st);
    store_found_free(&res);
    if (order != small)
        free(order);
    return rv;
}

CK_RV store_find_plan(store *st, const CK_ATTRIBUTE *tmpl, size_t n, char *out, size_t cap)
{
    size_t order[STORE_FIND_TERMS], k = n < STORE_FIND_TERMS ? n : STORE_FIND_TERMS, off = 0;
    sqlite3_stmt *s = NULL, *plan = NULL;
    char *sql = NULL;
    CK_RV rv;

    ENSURE(st != NULL && out != NULL && cap > 0 && (tmpl != NULL || n == 0), CKR_ARGUMENTS_BAD);
    ENSURE(n <= STORE_FIND_TERMS, CKR_ARGUMENTS_BAD);
    out[0] = '\0';
    rank_terms(tmpl, n, order);
    lock(st);
    GUARD_OUT(find_stmt(st, &st->c, k, walks_objects(tmpl, order, k), &s));
    sql = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sqlite3_sql(s));
    ENSURE_OUT(sql != NULL, CKR_HOST_MEMORY);
    ENSURE_OUT(sqlite3_prepare_v2(st->c.db, sql, -1, &plan, NULL) == SQLITE_OK, CKR_GENERAL_ERROR);
    while (sqlite3_step(plan) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(plan, 3);
        if (d != NULL && !append(out, cap, &off, "%s%s", off ? "; " : "", d))
            break;
    }
    rv = CKR_OK;
out:
    sqlite3_finalize(plan);
    sqlite3_free(sql);
    unlock(st);
    return rv;
}

CK_RV store_find(store *st, const CK_ATTRIBUTE *tmpl, size_t n, CK_OBJECT_HANDLE **out,
                 size_t *count)
{
    store_found f;
    ENSURE(out != NULL && count != NULL, CKR_ARGUMENTS_BAD);
    *out = NULL;
    *count = 0;
    GUARD(store_find_with(st, tmpl, n, NULL, 0, &f));
    if (f.count > 0) {
        CK_OBJECT_HANDLE *hs = malloc(f.count * sizeof(*hs));
        if (hs == NULL) {
            store_found_free(&f);
            return CKR_HOST_MEMORY;
        }
        for (size_t i = 0; i < f.count; i++)
            hs[i] = f.hits[i].handle;
        *out = hs;
        *count = f.count;
    }
    store_found_free(&f);
    return CKR_OK;
}

/* ---- metadata ------------------------------------------------------------------ */

CK_RV store_meta_get(store *st, const char *key, uint8_t **val, size_t *len)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    size_t n;
    int rc;

    ENSURE(st != NULL && key != NULL && val != NULL && len != NULL, CKR_ARGUMENTS_BAD);
    *val = NULL;
    *len = 0;
    lock(st);
    GUARD_OUT(stmt(st, S_META_GET, &s));
    GUARD_OUT(bind_text(s, 1, key));
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
    rv = CKR_OK;
    if (rc == SQLITE_DONE)
        goto out;
    n = (size_t)sqlite3_column_bytes(s, 0);
    *val = malloc(n ? n : 1);
    ENSURE_OUT(*val != NULL, CKR_HOST_MEMORY);
    if (n > 0)
        memcpy(*val, sqlite3_column_blob(s, 0), n);
    *len = n;
out:
    sqlite3_reset(s);
    unlock(st);
    return rv;
}

CK_RV store_meta_put(store *st, const char *key, const uint8_t *val, size_t len)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;

    ENSURE(st != NULL && key != NULL && key[0] != '\0', CKR_ARGUMENTS_BAD);
    ENSURE(val != NULL || len == 0, CKR_ARGUMENTS_BAD);
    /* The magic is what makes the file a token; nobody rewrites it. */
    ENSURE(strcmp(key, MAGIC_KEY) != 0, CKR_ARGUMENTS_BAD);
    lock(st);
    GUARD_OUT(stmt(st, S_META_PUT, &s));
    GUARD_OUT(bind_text(s, 1, key));
    GUARD_OUT(bind_blob(s, 2, val, len));
    rv = run(s);
out:
    sqlite3_reset(s);
    unlock(st);
    return rv;
}

/* ---- named users and the audit head (schema version 2) ------------------- */

CK_RV store_user_by_lookup(store *st, CK_USER_TYPE type, const uint8_t lookup[16], store_user *out)
{
    sqlite3_stmt *s = NULL;
    char name[sizeof(out->name)];
    CK_RV rv;
    int rc;

    ENSURE(st != NULL && lookup != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    lock(st);
    GUARD_OUT(stmt(st, S_USER_BY_LOOKUP, &s));
    GUARD_OUT(bind_int(s, 1, (int64_t)type));
    GUARD_OUT(bind_blob(s, 2, lookup, 16));
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
    ENSURE_OUT(rc == SQLITE_ROW, CKR_PIN_INCORRECT);
    ENSURE_OUT(sqlite3_column_bytes(s, 0) < (int)sizeof(name), CKR_DEVICE_ERROR);
    snprintf(name, sizeof(name), "%s", (const char *)sqlite3_column_text(s, 0));
    rv = CKR_OK;
out:
    sqlite3_reset(s);
    unlock(st);
    if (rv == CKR_OK)
        rv = store_user_get(st, name, out);
    return rv;
}

void store_user_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n && names != NULL; i++)
        free(names[i]);
    free(names);
}

CK_RV store_user_names(store *st, char ***names, size_t *n)
{
    sqlite3_stmt *s = NULL;
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    CK_RV rv;
    int rc;

    ENSURE(st != NULL && names != NULL && n != NULL, CKR_ARGUMENTS_BAD);
    lock(st);
    GUARD_OUT(stmt(st, S_USER_NAMES, &s));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            char **nv = realloc(v, ncap * sizeof(*nv));
            ENSURE_OUT(nv != NULL, CKR_HOST_MEMORY);
            v = nv;
            cap = ncap;
        }
        v[cnt] = strdup((const char *)sqlite3_column_text(s, 0));
        ENSURE_OUT(v[cnt] != NULL, CKR_HOST_MEMORY);
        cnt++;
    }
    ENSURE_OUT(rc == SQLITE_DONE, store_sqlite_rv(rc));
    *names = v;
    *n = cnt;
    v = NULL;
    rv = CKR_OK;
out:
    sqlite3_reset(s);
    unlock(st);
    store_user_names_free(v, cnt);
    return rv;
}

CK_RV store_user_delete(store *st, const char *name)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;

    ENSURE(st != NULL && name_ok(name), CKR_ARGUMENTS_BAD);
    lock(st);
    GUARD_OUT(stmt(st, S_USER_DELETE, &s));
    GUARD_OUT(bind_text(s, 1, name));
    GUARD_OUT(run(s));
    ENSURE_OUT(sqlite3_changes(st->c.db) == 1, CKR_USER_PIN_NOT_INITIALIZED);
out:
    sqlite3_reset(s);
    unlock(st);
    return rv;
}

CK_RV store_audit_head_get(store *st, uint64_t *seq, uint8_t mac[32], uint8_t tag[32], bool *found)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    int rc;

    ENSURE(st != NULL && seq != NULL && mac != NULL && tag != NULL && found != NULL,
           CKR_ARGUMENTS_BAD);
    *found = false;
    lock(st);
    GUARD_OUT(stmt(st, S_AUDIT_HEAD_GET, &s));
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
    rv = CKR_OK;
    if (rc == SQLITE_DONE)
        goto out;
    ENSURE_OUT(sqlite3_column_bytes(s, 1) == 32 && sqlite3_column_bytes(s, 2) == 32,
               CKR_DEVICE_ERROR);
    *seq = (uint64_t)sqlite3_column_int64(s, 0);
    memcpy(mac, sqlite3_column_blob(s, 1), 32);
    memcpy(tag, sqlite3_column_blob(s, 2), 32);
    *found = true;
out:
    sqlite3_reset(s);
    unlock(st);
    return rv;
}

CK_RV store_audit_head_advance(store *st, uint64_t seq, const uint8_t mac[32], const uint8_t tag[32],
                               int64_t outbox_upto)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;

    ENSURE(st != NULL && mac != NULL && tag != NULL && seq <= INT64_MAX && outbox_upto >= 0,
           CKR_ARGUMENTS_BAD);
    lock(st);
    /* Committed without an fsync of its own (synchronous = NORMAL): the head
     * may lag the records after a power cut, which verify reports as
     * unsealed records, never as tampering (docs/audit.md); it is made
     * durable by the next durable commit to the token file. The records it
     * seals were fsync'ed before, so the head is never ahead of them. An
     * outbox delete that is lost the same way is undone by the audit file's
     * note of what it took (log.c). */
    GUARD_OUT(run_id(st, S_SYNC_NORMAL));
    GUARD_OUT(begin_write(st));
    if (outbox_upto > 0) {
        GUARD_OUT(stmt(st, S_OUTBOX_DELETE, &s));
        GUARD_OUT(bind_int(s, 1, outbox_upto));
        GUARD_OUT(run(s));
    }
    if (seq > 0) {
        GUARD_OUT(stmt(st, S_AUDIT_HEAD_PUT, &s));
        GUARD_OUT(bind_int(s, 1, (int64_t)seq));
        GUARD_OUT(bind_blob(s, 2, mac, 32));
        GUARD_OUT(bind_blob(s, 3, tag, 32));
        GUARD_OUT(run(s));
    }
    rv = commit(st);
out:
    sqlite3_reset(s);
    if (rv != CKR_OK)
        rollback(st);
    /* Every other commit stays durable: a connection that cannot be put
     * back to FULL is closed (the next use reconnects with FULL). */
    if (st->c.db != NULL && run_id(st, S_SYNC_FULL) != CKR_OK) {
        disconnect(st);
        if (rv == CKR_OK)
            rv = CKR_DEVICE_ERROR;
    }
    unlock(st);
    return rv;
}

CK_RV store_outbox_read(store *st, int64_t after_id, size_t max, store_outbox_fn fn, void *ctx)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    int rc;

    ENSURE(st != NULL && fn != NULL && max > 0 && max <= INT64_MAX, CKR_ARGUMENTS_BAD);
    lock(st);
    GUARD_OUT(stmt(st, S_OUTBOX_READ, &s));
    GUARD_OUT(bind_int(s, 1, after_id));
    GUARD_OUT(bind_int(s, 2, (int64_t)max));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const uint8_t *v = sqlite3_column_blob(s, 1);
        size_t len = (size_t)sqlite3_column_bytes(s, 1);
        GUARD_OUT(fn(ctx, sqlite3_column_int64(s, 0), v != NULL ? v : (const uint8_t *)"", len));
    }
    ENSURE_OUT(rc == SQLITE_DONE, store_sqlite_rv(rc));
    rv = CKR_OK;
out:
    sqlite3_reset(s);
    unlock(st);
    return rv;
}

CK_RV store_object_attr(store *st, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, uint8_t *buf,
                        size_t cap, size_t *len, bool *found)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    int rc;

    ENSURE(st != NULL && len != NULL && found != NULL && (buf != NULL || cap == 0),
           CKR_ARGUMENTS_BAD);
    *found = false;
    *len = 0;
    lock(st);
    GUARD_OUT(stmt(st, S_ATTR_GET, &s));
    GUARD_OUT(bind_int(s, 1, (int64_t)h));
    GUARD_OUT(bind_int(s, 2, (int64_t)type));
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
    rv = CKR_OK;
    if (rc == SQLITE_DONE)
        goto out;
    *found = true;
    *len = (size_t)sqlite3_column_bytes(s, 0);
    ENSURE_OUT(*len <= cap, CKR_BUFFER_TOO_SMALL);
    if (*len > 0)
        memcpy(buf, sqlite3_column_blob(s, 0), *len);
out:
    sqlite3_reset(s);
    unlock(st);
    return rv;
}

/* ---- guarded inserts and counters (key families, nonce discipline) ------- */

CK_RV store_object_insert_unless(store *st, const uint8_t *mk, const store_attr *attrs, size_t n,
                                 const CK_ATTRIBUTE *unless, CK_OBJECT_HANDLE upd_h,
                                 const store_attr *upd, size_t upd_n, store_audit_rec *rec,
                                 CK_OBJECT_HANDLE *out)
{
    sqlite3_stmt *s = NULL;
    CK_OBJECT_HANDLE h;
    CK_RV rv;
    int rc;

    ENSURE(st != NULL && out != NULL && unless != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(unless->pValue != NULL || unless->ulValueLen == 0, CKR_ARGUMENTS_BAD);
    /* The guard is answered by the index (S_ATTR_EXISTS). */
    ENSURE(store_type_indexed(unless->type) && unless->ulValueLen > 0, CKR_ARGUMENTS_BAD);
    GUARD(check_attrs(mk, attrs, n));
    GUARD(check_attrs(mk, upd, upd_n));
    lock(st);
    GUARD_OUT(begin_write(st));
    GUARD_OUT(stmt(st, S_ATTR_EXISTS, &s));
    GUARD_OUT(bind_int(s, 1, (int64_t)unless->type));
    GUARD_OUT(bind_blob(s, 2, unless->ulValueLen ? unless->pValue : "", unless->ulValueLen));
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
    ENSURE_OUT(rc == SQLITE_DONE, CKR_ACTION_PROHIBITED);
    if (upd_h != 0) {
        GUARD_OUT(stmt(st, S_OBJ_EXISTS, &s));
        GUARD_OUT(bind_int(s, 1, (int64_t)upd_h));
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
        ENSURE_OUT(rc == SQLITE_ROW, CKR_OBJECT_HANDLE_INVALID);
        GUARD_OUT(put_attrs_locked(st, mk, upd_h, upd, upd_n));
    }
    GUARD_OUT(insert_object_locked(st, mk, attrs, n, rec, &h));
    GUARD_OUT(commit(st));
    *out = h;
out:
    if (rv != CKR_OK)
        rollback(st);
    unlock(st);
    return rv;
}

/* The counter's value, read inside the caller's lock (and transaction). */
static CK_RV counter_read_locked(store *st, const char *key, uint64_t *v)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    GUARD(stmt(st, S_META_GET, &s));
    GUARD_OUT(bind_text(s, 1, key));
    int rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_rv(rc));
    *v = 0;
    if (rc == SQLITE_ROW) {
        ENSURE_OUT(sqlite3_column_bytes(s, 0) == 8, CKR_DEVICE_ERROR);
        *v = be_get(sqlite3_column_blob(s, 0), 8);
    }
    rv = CKR_OK;
out:
    sqlite3_reset(s);
    return rv;
}

CK_RV store_counter_add(store *st, const char *name, uint64_t n, uint64_t limit, uint64_t *granted,
                        uint64_t *after)
{
    sqlite3_stmt *s = NULL;
    char key[80];
    uint8_t buf[8];
    uint64_t v;
    CK_RV rv;

    ENSURE(st != NULL && name != NULL && granted != NULL && after != NULL, CKR_ARGUMENTS_BAD);
    ENSURE((size_t)snprintf(key, sizeof(key), "counter:%s", name) < sizeof(key), CKR_ARGUMENTS_BAD);
    lock(st);
    GUARD_OUT(begin_write(st));
    GUARD_OUT(counter_read_locked(st, key, &v));
    *granted = v >= limit ? 0 : (limit - v < n ? limit - v : n);
    v += *granted;
    be_put(buf, v, 8);
    GUARD_OUT(stmt(st, S_META_PUT, &s));
    GUARD_OUT(bind_text(s, 1, key));
    GUARD_OUT(bind_blob(s, 2, buf, sizeof(buf)));
    GUARD_OUT(run(s));
    GUARD_OUT(commit(st));
    *after = v;
out:
    if (rv != CKR_OK)
        rollback(st);
    unlock(st);
    return rv;
}

CK_RV store_counter_get(store *st, const char *name, uint64_t *value)
{
    char key[80];
    ENSURE(st != NULL && name != NULL && value != NULL, CKR_ARGUMENTS_BAD);
    ENSURE((size_t)snprintf(key, sizeof(key), "counter:%s", name) < sizeof(key), CKR_ARGUMENTS_BAD);
    lock(st);
    CK_RV rv = counter_read_locked(st, key, value);
    unlock(st);
    return rv;
}
