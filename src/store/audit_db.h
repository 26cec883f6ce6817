/* The audit file's SQLite access (docs/audit.md): creating and recognising
 * token-N.audit.db, appending rows in one write transaction whose MACs the
 * caller computes, and reading them back in order. Only this file's .c
 * touches the audit file; what the MACs mean belongs to src/audit/. */
#ifndef CUSTOS_STORE_AUDIT_DB_H
#define CUSTOS_STORE_AUDIT_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pkcs11.h"
#include "util/guard.h"

#define AUDIT_DB_SCHEMA_VERSION 1
#define AUDIT_MAC_LEN 32

/* One row of the `records` table. Text columns are NUL-terminated and at
 * most sizeof - 1 bytes; the writer truncates, a longer stored value is a
 * malformed row. */
typedef struct audit_row {
    int64_t seq;
    int64_t time_us;
    char kind[8];
    char host[256];
    char os_user[64];
    int64_t pid;
    char process[32];
    char token_user[64];
    char roles[48];
    int64_t session;
    char function[48];
    char mechanism[64];
    int64_t key_handle;
    char key_label[64];
    char key_id[65];
    char key_family[64];
    int64_t key_version;
    char resource[65];
    char rv[48];
    char decision[192];
    int64_t count;
    int64_t first_us;
    int64_t last_us;
    uint8_t prev_mac[AUDIT_MAC_LEN];
    uint8_t mac[AUDIT_MAC_LEN];
} audit_row;

/* The columns between seq and last_us in table order (prev_mac and mac
 * follow): the one description the SQL, the canonical encoding and the JSON
 * rendering all read. */
typedef enum audit_col_type { AUDIT_COL_INT, AUDIT_COL_UINT, AUDIT_COL_TEXT } audit_col_type;
typedef struct audit_col {
    const char *name;
    audit_col_type type;
    size_t off;   /* offsetof(audit_row, ...) */
    size_t size;  /* text: buffer size */
} audit_col;
extern const audit_col AUDIT_COLS[];
extern const size_t AUDIT_NCOLS;

typedef struct audit_db audit_db;

/* Open the audit file, creating it (mode 0600) when create is set; an
 * existing empty file gets the schema. CKR_DEVICE_ERROR when it cannot be
 * opened or is not a Custos audit file (wrong magic, newer version). */
CK_RV audit_db_open(const char *path, bool create, audit_db **out) CUSTOS_WUR;
void audit_db_close(audit_db *db);
/* In a child after fork: drop without touching the connection (kept
 * reachable, never used again). */
void audit_db_forget_after_fork(audit_db *db);
/* Around fork(): close every audit connection and hold them (they
 * reconnect on next use); release in parent and child. */
void audit_db_fork_prepare(void);
void audit_db_fork_release(void);

/* Called for each row being appended with seq and prev_mac filled in: must
 * fill row->mac. Runs inside the write transaction. */
typedef CK_RV (*audit_db_seal_fn)(void *ctx, audit_row *row);
/* Append n rows in one transaction (BEGIN IMMEDIATE: processes queue on the
 * file's write lock): read the last (seq, mac), then for each row set seq
 * and prev_mac, call seal, insert. On CKR_OK every row carries its seq,
 * prev_mac and mac. Full disk: CKR_DEVICE_MEMORY; other failures:
 * CKR_DEVICE_ERROR (CKR_HOST_MEMORY when out of memory). */
CK_RV audit_db_append(audit_db *db, audit_row *rows, size_t n, audit_db_seal_fn seal,
                      void *ctx) CUSTOS_WUR;

/* The same in steps, for a caller that appends rows from elsewhere (the
 * token's outbox) and notes what it took in the same transaction:
 * audit_db_begin takes the file's write lock (BEGIN IMMEDIATE) and, on
 * CKR_OK, holds this object's mutex until audit_db_end, which commits
 * (commit = true) or rolls back, and returns the commit's result. In between
 * only the *_locked calls, from the same thread. */
CK_RV audit_db_begin(audit_db *db) CUSTOS_WUR;
CK_RV audit_db_append_locked(audit_db *db, audit_row *rows, size_t n, audit_db_seal_fn seal,
                             void *ctx) CUSTOS_WUR;
/* The audit file's own bookkeeping (its `meta` table; "magic" is refused).
 * get: *found says whether the key exists, *len is the value's length, and
 * the value is copied only when it fits cap. */
CK_RV audit_db_meta_get_locked(audit_db *db, const char *key, uint8_t *buf, size_t cap,
                               size_t *len, bool *found) CUSTOS_WUR;
CK_RV audit_db_meta_put_locked(audit_db *db, const char *key, const uint8_t *val,
                               size_t len) CUSTOS_WUR;
CK_RV audit_db_end(audit_db *db, bool commit) CUSTOS_WUR;

/* A row without its seq and MACs as bytes (the token's audit outbox keeps
 * records this way until they join the chain): every column from time_us
 * on in AUDIT_COLS order, an integer as 8 bytes big-endian, a text as a
 * 2-byte big-endian length and its bytes. pack returns the length, or 0
 * when cap is too small (AUDIT_PACKED_MAX always fits); unpack is false for
 * bytes that are not exactly one packed row. */
#define AUDIT_PACKED_MAX 1536
size_t audit_row_pack(const audit_row *r, uint8_t *out, size_t cap);
bool audit_row_unpack(const uint8_t *in, size_t len, audit_row *r);

/* Called per row in seq order; malformed is NULL, or names what is wrong
 * with the stored row (a column of the wrong type or length; the row then
 * holds what fitted). A non-OK return stops the scan and is returned. */
typedef CK_RV (*audit_db_row_fn)(void *ctx, const audit_row *row, const char *malformed);
/* Every row with seq > after_seq and since_us <= time_us <= until_us, in
 * one read snapshot. */
CK_RV audit_db_scan(audit_db *db, int64_t after_seq, int64_t since_us, int64_t until_us,
                    audit_db_row_fn fn, void *ctx) CUSTOS_WUR;
/* The highest seq (0 when empty). */
CK_RV audit_db_last_seq(audit_db *db, int64_t *seq) CUSTOS_WUR;

/* Run fn while holding the audit file's write lock (one write transaction
 * with nothing written), so that processes doing the same are serialised:
 * how the audit key is made exactly once. */
CK_RV audit_db_serialised(audit_db *db, CK_RV (*fn)(void *ctx), void *ctx) CUSTOS_WUR;

/* For tests: cap the file at `pages` pages, so that appends meet the
 * SQLITE_FULL of a full disk (0: no cap). */
void audit_db_limit_pages(audit_db *db, unsigned pages);

#endif
