/* Shared between the files of the store unit only: the store struct, the
 * SQLite error mapping, the schema migrations (migrate.c) and the sealing of
 * attribute values (seal.c). Nothing outside src/store/ includes this. */
#ifndef CUSTOS_STORE_INTERNAL_H
#define CUSTOS_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include "store/conn.h"
#include "store/store.h"

/* Every prepared statement the store keeps, prepared on first use and kept
 * until store_close (the SQL text is the STMT_SQL table in sqlite.c). */
enum store_stmt {
    S_BEGIN_IMMEDIATE,
    S_BEGIN_READ,
    S_COMMIT,
    S_ROLLBACK,
    S_DATA_VERSION,
    S_SYNC_NORMAL,
    S_SYNC_FULL,
    S_SYNC_GET,
    S_TOKEN_GET,
    S_TOKEN_INSERT,
    S_TOKEN_SET_LABEL,
    S_USER_GET,
    S_USER_PUT,
    S_USER_FAIL,
    S_USER_FAILURES,
    S_USER_RESET,
    S_USERS_DELETE,
    S_OBJ_INSERT,
    S_OBJ_EXISTS,
    S_OBJ_LOAD,
    S_OBJ_DELETE,
    S_OBJS_DELETE,
    S_ATTRS_DELETE,
    S_OBJ_COUNT,
    S_ATTR_PUT,
    S_ATTR_MATCH,
    S_META_GET,
    S_META_PUT,
    S_USER_BY_LOOKUP,
    S_USER_NAMES,
    S_USER_DELETE,
    S_AUDIT_HEAD_GET,
    S_AUDIT_HEAD_PUT,
    S_ATTR_GET,
    S_ATTR_EXISTS,
    S_OUTBOX_PUT,
    S_OUTBOX_READ,
    S_OUTBOX_DELETE,
    S_COUNT_
};

/* Attribute types the search index leaves out (schema version 3): the
 * boolean attributes of PKCS#11 3.2 sec. 4 but CKA_PRIVATE (a not-logged-in
 * search is CKA_PRIVATE = false alone). Each has two values shared by most
 * objects: as index entries they were most of the index and a leaf page to
 * write per type for every object made, and as the first term of a search
 * they would walk nearly every object anyway. A search that has only these
 * walks the objects and probes each (find_stmt). The text is part of the
 * index's definition in migrate.c (V3) and must be repeated in every query
 * meant to use the index (SQLite uses a partial index only for a query whose
 * WHERE has its terms). A chain of <> rather than NOT IN (...): SQLite builds
 * a temporary b-tree for an IN list on every run of a statement, which made
 * a search 40% slower. STORE_UNINDEXED lists the same types (a unit test
 * checks that they agree). */
#define STORE_UNINDEXED_SQL \
    "type <> 1 AND type <> 134 AND type <> 259 AND type <> 260 AND " \
    "type <> 261 AND type <> 262 AND type <> 263 AND type <> 264 AND " \
    "type <> 265 AND type <> 266 AND type <> 267 AND type <> 268 AND " \
    "type <> 354 AND type <> 355 AND type <> 356 AND type <> 357 AND " \
    "type <> 368 AND type <> 369 AND type <> 370 AND type <> 514 AND " \
    "type <> 528"
extern const CK_ATTRIBUTE_TYPE STORE_UNINDEXED[21];

/* The whole predicate of the search index (schema version 4): clear values
 * only, no empty value, no type of STORE_UNINDEXED. Empty values (a key's
 * CKA_START_DATE and CKA_END_DATE, its empty templates and mechanism list,
 * an unset CKA_ID) were half of a key's index entries and a leaf page each
 * to write for every key made; a search with an empty value walks the
 * objects instead (store_find_with). A query meant to use the index repeats
 * "value <> x''" on its leading term. */
#define STORE_INDEX_WHERE "sealed = 0 AND value <> x'' AND " STORE_UNINDEXED_SQL
bool store_type_indexed(CK_ATTRIBUTE_TYPE type);

/* Templates of up to this many terms are found with one cached statement;
 * longer ones use it for their most selective terms and check the rest row
 * by row (S_ATTR_MATCH). */
#define STORE_FIND_TERMS 8

/* Searches run on a pool of read connections of their own, so that
 * threads searching at once do not queue behind one connection (and behind
 * a writer's fsync); when every one is in use, a search takes the main
 * connection under the store's lock, as every other call does. */
#define STORE_READERS 4

/* One SQLite connection and its prepared statements. */
typedef struct store_conn {
    sqlite3 *db;                   /* SQLITE_OPEN_NOMUTEX: its owner serialises it */
    sqlite3_stmt *stmt[S_COUNT_];
    sqlite3_stmt *find[STORE_FIND_TERMS + 1]; /* find[n]: n-term search */
    sqlite3_stmt *scan[STORE_FIND_TERMS + 1]; /* scan[n]: n terms none indexed */
    uint64_t mmap_bytes;           /* what PRAGMA mmap_size was set to */
} store_conn;

struct store {
    pthread_mutex_t lock;          /* taken by every function that touches c */
    store_conn c;                  /* the main connection: every write */
    char serial[17];               /* token serial, immutable once read; "" when
                                      the file has no token row */
    pthread_mutex_t rlock;         /* guards rbusy */
    pthread_cond_t ridle;          /* signalled when a reader is given back */
    bool rbusy[STORE_READERS];
    bool rclosing;                 /* fork or close: no reader is handed out */
    store_conn readers[STORE_READERS]; /* reader i: used only by who set rbusy[i] */
    uint8_t *scratch;              /* sealed-blob buffer, reused under lock */
    size_t scratch_cap;
    store *forgotten;              /* next in the list of stores abandoned
                                      after fork (store_forget_after_fork) */
    char *path;                    /* for reconnecting after a fork */
    uint64_t mmap_bytes;           /* store_set_mmap, kept across reconnects
                                      (atomic: readers read it without lock) */
    store *next_open;              /* registry of open stores (fork) */
};

/* SQLite result code -> CK_RV, for a store already open. */
CK_RV store_sqlite_rv(int rc) CUSTOS_WUR;
/* The same while opening: a file SQLite cannot make sense of is
 * CKR_TOKEN_NOT_RECOGNIZED rather than CKR_DEVICE_ERROR. */
CK_RV store_sqlite_open_rv(int rc) CUSTOS_WUR;

/* ---- migrate.c ---------------------------------------------------------- */
/* Bring the schema of an open connection to STORE_SCHEMA_VERSION, running
 * every pending migration in one write transaction (a file is never left
 * between versions). CKR_TOKEN_NOT_RECOGNIZED when the file is newer
 * than this code or is a version-0 file holding someone else's tables. */
CK_RV store_migrate(sqlite3 *db) CUSTOS_WUR;
/* Build the current schema from version 0 inside the caller's (write)
 * transaction; store_create uses it so that a new file appears whole. */
CK_RV store_schema_build_locked(sqlite3 *db) CUSTOS_WUR;
/* Is this a Custos token file at the current version: magic present and
 * every table readable (touches each root page, which catches truncation
 * without a full integrity check)? */
CK_RV store_schema_check(sqlite3 *db) CUSTOS_WUR;

/* ---- seal.c --------------------------------------------------------------- */
/* Seal one attribute value of object h for token serial under mk into out
 * (len + CRYPTO_SEAL_OVERHEAD bytes). */
CK_RV store_seal_attr(const char *serial, const uint8_t *mk, CK_OBJECT_HANDLE h,
                      CK_ATTRIBUTE_TYPE type, const uint8_t *pt, size_t len,
                      uint8_t *out) CUSTOS_WUR;

#endif
