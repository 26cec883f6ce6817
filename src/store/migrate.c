/* The versioned schema of a token file: MIGRATIONS[i] takes PRAGMA
 * user_version i to i + 1 in one transaction, and the checks that tell a
 * Custos token file from anything else. docs/store-format.md describes the
 * tables; a change to the schema is a new row here, never an edit of an old
 * one (files in the field were built by the old rows). */
#include <stdio.h>
#include <string.h>
#include "store/internal.h"

/* Version 0 -> 1: the first schema. The partial index attrs_find holds only
 * clear values: sealed blobs never match a search (store.h), and leaving them
 * out keeps ciphertext out of a second b-tree. Its key (type, value, sealed,
 * handle) answers a search without touching the table (sealed is in it so
 * SQLite 3.40 sees the index as covering) and hands the handles of one
 * (type, value) back in ascending order, so ORDER BY handle costs nothing. */
static const char V1[] =
    "CREATE TABLE meta ("
    " key TEXT PRIMARY KEY NOT NULL,"
    " value BLOB NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE token ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " label TEXT NOT NULL,"
    " serial TEXT NOT NULL,"
    " created INTEGER NOT NULL"
    ");"
    "CREATE TABLE users ("
    " name TEXT PRIMARY KEY NOT NULL,"
    " user_type INTEGER NOT NULL,"
    " roles INTEGER NOT NULL,"
    " kdf_alg INTEGER NOT NULL,"
    " kdf_p1 INTEGER NOT NULL,"
    " kdf_p2 INTEGER NOT NULL,"
    " kdf_p3 INTEGER NOT NULL,"
    " salt BLOB NOT NULL,"
    " sealed_mk BLOB NOT NULL,"
    " failures INTEGER NOT NULL DEFAULT 0,"
    " flags INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE TABLE objects ("
    " handle INTEGER PRIMARY KEY AUTOINCREMENT,"
    " created INTEGER NOT NULL"
    ");"
    "CREATE TABLE attrs ("
    " handle INTEGER NOT NULL REFERENCES objects(handle) ON DELETE CASCADE,"
    " type INTEGER NOT NULL,"
    " value BLOB NOT NULL,"
    " sealed INTEGER NOT NULL CHECK (sealed IN (0, 1)),"
    " PRIMARY KEY (handle, type)"
    ") WITHOUT ROWID;"
    "CREATE INDEX attrs_find ON attrs(type, value, sealed) WHERE sealed = 0;"
    "INSERT INTO meta(key, value) VALUES ('magic', CAST('custos-token' AS BLOB));";

/* Version 1 -> 2: named users with PIN-selected login (a lookup tag per
 * user, unique per user type: docs/roles.md) and the audit chain head
 * (docs/audit.md). */
static const char V2[] =
    "ALTER TABLE users ADD COLUMN lookup BLOB;"
    "CREATE UNIQUE INDEX users_lookup ON users(user_type, lookup) WHERE lookup IS NOT NULL;"
    "CREATE TABLE audit_head ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seq INTEGER NOT NULL,"
    " mac BLOB NOT NULL,"
    " tag BLOB NOT NULL"
    ");";

/* Version 2 -> 3: the search index without the boolean attributes but
 * CKA_PRIVATE (STORE_UNINDEXED_SQL in internal.h): about 60% of its entries,
 * and most of the pages written per object made. Rebuilding it reads every
 * attribute row once (tens of seconds for a million keys, at the first open
 * by this version). */
static const char V3[] =
    "DROP INDEX attrs_find;"
    "CREATE INDEX attrs_find ON attrs(type, value, sealed)"
    " WHERE sealed = 0 AND " STORE_UNINDEXED_SQL ";";

/* Version 3 -> 4: empty values out of the search index too
 * (STORE_INDEX_WHERE in internal.h): a key made by C_GenerateKey has six or
 * more, each a leaf page written per key. Rebuilt like version 3's. */
static const char V4[] =
    "DROP INDEX attrs_find;"
    "CREATE INDEX attrs_find ON attrs(type, value, sealed) WHERE " STORE_INDEX_WHERE ";";

/* Version 4 -> 5: the audit outbox (docs/audit.md, "The outbox"): the
 * record of a change to the token committed in the change's own
 * transaction, packed (audit_row_pack), until it joins the chain in the
 * audit file. AUTOINCREMENT: an id is never reused, so "drained up to id"
 * names the same rows forever. */
static const char V5[] =
    "CREATE TABLE audit_outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " row BLOB NOT NULL"
    ");";

static const char *const MIGRATIONS[] = {
    V1,
    V2,
    V3,
    V4,
    V5,
};

_Static_assert(ARRAY_LEN(MIGRATIONS) == STORE_SCHEMA_VERSION,
               "one migration per schema version");

/* One read per table (and the search index) touches its root page: a file
 * cut short loses those pages and SQLite reports it as corrupt. Cheap, unlike
 * PRAGMA quick_check, which reads the whole file. */
static const char *const PROBES[] = {
    "SELECT 1 FROM meta WHERE key = 'magic' AND value = CAST('custos-token' AS BLOB)",
    "SELECT 1 FROM token LIMIT 1",
    "SELECT 1 FROM users LIMIT 1",
    "SELECT 1 FROM objects LIMIT 1",
    "SELECT 1 FROM sqlite_sequence LIMIT 1",
    "SELECT 1 FROM attrs LIMIT 1",
    "SELECT 1 FROM attrs INDEXED BY attrs_find WHERE type = 0 AND value = X'00' AND "
    STORE_INDEX_WHERE,
    "SELECT 1 FROM audit_head LIMIT 1",
    "SELECT 1 FROM audit_outbox LIMIT 1",
};

/* Run one query returning at most one integer row; *found says whether a
 * row came back. */
static CK_RV query_int(sqlite3 *db, const char *sql, int64_t *val, bool *found)
{
    sqlite3_stmt *s = NULL;
    CK_RV rv;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    ENSURE_OUT(rc == SQLITE_OK, store_sqlite_open_rv(rc));
    rc = sqlite3_step(s);
    ENSURE_OUT(rc == SQLITE_ROW || rc == SQLITE_DONE, store_sqlite_open_rv(rc));
    *found = rc == SQLITE_ROW;
    *val = *found ? sqlite3_column_int64(s, 0) : 0;
    rv = CKR_OK;
out:
    sqlite3_finalize(s);
    return rv;
}

static CK_RV exec(sqlite3 *db, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? CKR_OK : store_sqlite_open_rv(rc);
}

static CK_RV user_version(sqlite3 *db, int64_t *v)
{
    bool found;
    GUARD(query_int(db, "PRAGMA user_version", v, &found));
    ENSURE(found && *v >= 0, CKR_TOKEN_NOT_RECOGNIZED);
    return CKR_OK;
}

/* Version 0 means "nothing here yet" only for a file without tables: a
 * version-0 file of another program is not ours to build into. */
static CK_RV check_empty(sqlite3 *db)
{
    int64_t n;
    bool found;
    GUARD(query_int(db, "SELECT count(*) FROM sqlite_master", &n, &found));
    ENSURE(found && n == 0, CKR_TOKEN_NOT_RECOGNIZED);
    return CKR_OK;
}

/* Apply migrations from version `from` up to the current one and record
 * the new version; the caller holds a write transaction. */
static CK_RV upgrade_locked(sqlite3 *db, int64_t from)
{
    char sql[48];
    if (from == 0)
        GUARD(check_empty(db));
    for (int64_t v = from; v < STORE_SCHEMA_VERSION; v++)
        GUARD(exec(db, MIGRATIONS[v]));
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
    return exec(db, sql);
}

CK_RV store_schema_build_locked(sqlite3 *db)
{
    int64_t v;
    GUARD(user_version(db, &v));
    ENSURE(v == 0, CKR_TOKEN_NOT_RECOGNIZED);
    return upgrade_locked(db, 0);
}

CK_RV store_migrate(sqlite3 *db)
{
    CK_RV rv;
    int64_t v;

    GUARD(user_version(db, &v));
    ENSURE(v <= STORE_SCHEMA_VERSION, CKR_TOKEN_NOT_RECOGNIZED);
    if (v == STORE_SCHEMA_VERSION)
        return CKR_OK;
    /* Another process may be opening the same old file: the version read
     * again under the write lock is the one that counts. */
    GUARD(exec(db, "BEGIN IMMEDIATE"));
    GUARD_OUT(user_version(db, &v));
    ENSURE_OUT(v <= STORE_SCHEMA_VERSION, CKR_TOKEN_NOT_RECOGNIZED);
    if (v < STORE_SCHEMA_VERSION)
        GUARD_OUT(upgrade_locked(db, v));
    GUARD_OUT(exec(db, "COMMIT"));
out:
    if (rv != CKR_OK && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rv;
}

CK_RV store_schema_check(sqlite3 *db)
{
    int64_t v;
    bool found;
    GUARD(user_version(db, &v));
    ENSURE(v == STORE_SCHEMA_VERSION, CKR_TOKEN_NOT_RECOGNIZED);
    GUARD(query_int(db, PROBES[0], &v, &found));
    ENSURE(found, CKR_TOKEN_NOT_RECOGNIZED);
    for (size_t i = 1; i < ARRAY_LEN(PROBES); i++)
        GUARD(query_int(db, PROBES[i], &v, &found));
    return CKR_OK;
}
