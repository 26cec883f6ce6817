/* The token store: one SQLite file per token (WAL, synchronous=FULL, a
 * versioned schema with migrations). Only src/store/ includes SQLite.
 * Secret attributes are sealed here on the way in (AES-256-GCM under the
 * token master key, AAD naming token serial, object handle and attribute
 * type) and come back out sealed; store_unseal opens one when the core
 * needs it. Every function is thread-safe (one connection per store,
 * serialised by the store's own mutex) and many processes may open the same
 * file at once. See docs/store-format.md. */
#ifndef CUSTOS_STORE_H
#define CUSTOS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "pkcs11.h"
#include "util/guard.h"
#include "crypto/crypto.h"
#include "store/audit_db.h"

typedef struct store store;

#define STORE_SCHEMA_VERSION 5
#define STORE_MK_LEN 32
#define STORE_SEALED_MK_LEN (STORE_MK_LEN + CRYPTO_SEAL_OVERHEAD)

/* What identifies a token; fixed when the token is initialised. */
typedef struct store_token_info {
    char label[33];     /* NUL-terminated, at most 32 bytes of UTF-8 */
    char serial[17];    /* 16 hex digits, random at creation, never changes */
    int64_t created;    /* seconds since the epoch */
} store_token_info;

/* A login identity: the master key sealed under a key derived from its PIN.
 * Issue 2 has two: name "so" (CKU_SO) and "user" (CKU_USER). */
typedef struct store_user {
    char name[64];
    CK_USER_TYPE type;
    uint32_t roles;                        /* bit set, used by the roles issue */
    crypto_kdf_params kdf;
    uint8_t salt[16];
    uint8_t sealed_mk[STORE_SEALED_MK_LEN];
    uint32_t failures;                     /* consecutive wrong PINs */
    uint32_t flags;                        /* STORE_USER_* */
    bool has_lookup;                       /* PIN-selected login (docs/roles.md) */
    uint8_t lookup[16];                    /* unique per user type */
} store_user;
#define STORE_USER_DISABLED 0x1u

/* Create a new token file (fails with CKR_DEVICE_ERROR if the path exists)
 * holding the token row and its SO user, in one transaction. */
CK_RV store_create(const char *path, const store_token_info *info,
                   const store_user *so, store **out) CUSTOS_WUR;
/* Open an existing token file, migrating the schema forward if needed.
 * CKR_TOKEN_NOT_RECOGNIZED when the file is not a Custos store or is
 * damaged; CKR_DEVICE_ERROR when it cannot be read. */
CK_RV store_open(const char *path, store **out) CUSTOS_WUR;
/* Read the file through a memory map of up to `bytes` (0: off, every page
 * read with pread). Reads of a large token then cost no system call; the
 * price is that an I/O error on the file, or the file cut short by another
 * program while mapped, raises SIGBUS in the process instead of giving
 * CKR_DEVICE_ERROR (docs/configuration.md, [store] mmap_mib). Kept across
 * reconnects; a store starts with it off. */
#define STORE_MMAP_MAX 0x7fff0000ull /* SQLite's own ceiling on Linux */
CK_RV store_set_mmap(store *st, uint64_t bytes) CUSTOS_WUR;
/* Close; NULL is fine. */
void store_close(store *st);
/* After fork, in the child: drop the handle without touching the
 * connection (SQLite connections must not cross fork). The abandoned
 * connection stays reachable from a static list, so leak checkers in the
 * child see it as still in use. */
void store_forget_after_fork(store *st);

/* CKR_TOKEN_NOT_RECOGNIZED when the file has no token row (an empty file
 * that store_open migrated, never built by store_create). */
/* Fork without SQLite state crossing it. Call store_fork_prepare just
 * before fork(): it waits for every open store to be idle, closes each
 * connection and keeps the stores locked; store_fork_release, in the parent
 * and in the child after fork(), unlocks them. Each store reconnects on its
 * next use, so neither process holds a connection opened before the fork
 * (SQLite forbids that: the child would share the parent's WAL bookkeeping
 * without its POSIX locks). */
void store_fork_prepare(void);
void store_fork_release(void);

CK_RV store_token_get(store *st, store_token_info *out) CUSTOS_WUR;
/* C_InitToken on an initialised token: in one transaction delete every
 * object and user, set the new label and the new SO user. */
CK_RV store_reinit(store *st, const char *label, const store_user *so) CUSTOS_WUR;

/* A counter SQLite bumps whenever another connection commits
 * (PRAGMA data_version); cheap, used to invalidate caches. Commits made
 * through st itself do not change it. */
CK_RV store_data_version(store *st, uint64_t *out) CUSTOS_WUR;

/* ---- users ------------------------------------------------------------ */
/* CKR_USER_PIN_NOT_INITIALIZED when no user has that name. */
CK_RV store_user_get(store *st, const char *name, store_user *out) CUSTOS_WUR;
/* Insert or replace by name. CKR_PIN_INVALID when another user of the same
 * type has the same lookup tag (the same PIN). */
CK_RV store_user_put(store *st, const store_user *u) CUSTOS_WUR;
/* The user of this type whose lookup tag this is: CKR_PIN_INCORRECT when
 * none. */
CK_RV store_user_by_lookup(store *st, CK_USER_TYPE type, const uint8_t lookup[16],
                           store_user *out) CUSTOS_WUR;
/* Every user name, sorted (malloc'ed array of malloc'ed strings). */
CK_RV store_user_names(store *st, char ***names, size_t *n) CUSTOS_WUR;
void store_user_names_free(char **names, size_t n);
/* CKR_USER_PIN_NOT_INITIALIZED when no such user. */
CK_RV store_user_delete(store *st, const char *name) CUSTOS_WUR;

/* ---- the audit chain head (docs/audit.md) --------------------------------- */
/* found false when no record was ever sealed. */
CK_RV store_audit_head_get(store *st, uint64_t *seq, uint8_t mac[32], uint8_t tag[32],
                           bool *found) CUSTOS_WUR;
/* Move the head forward (never back: a lower seq is ignored, CKR_OK) and,
 * in the same transaction, delete the outbox rows with id <= outbox_upto
 * (0: none), which the caller has just chained into the audit file. seq 0:
 * the head stays. This one commit is not fsync'ed: the records it seals
 * were (audit.md). */
CK_RV store_audit_head_advance(store *st, uint64_t seq, const uint8_t mac[32],
                               const uint8_t tag[32], int64_t outbox_upto) CUSTOS_WUR;
/* The audit outbox (docs/audit.md, "The outbox"). Rows with id > after_id
 * in id order, at most max of them, each given to fn with its packed bytes
 * (valid during the call); a non-OK return from fn stops and is returned. */
typedef CK_RV (*store_outbox_fn)(void *ctx, int64_t id, const uint8_t *row, size_t len);
CK_RV store_outbox_read(store *st, int64_t after_id, size_t max, store_outbox_fn fn,
                        void *ctx) CUSTOS_WUR;
/* How SQLite would run the search for tmpl (n <= 8): EXPLAIN QUERY PLAN's
 * lines joined by "; " into out; for tests, which check that a search
 * starts from the index when it can. */
CK_RV store_find_plan(store *st, const CK_ATTRIBUTE *tmpl, size_t n, char *out,
                      size_t cap) CUSTOS_WUR;
/* The connection's PRAGMA synchronous (2 = FULL, what every other commit
 * uses); for tests. */
CK_RV store_synchronous(store *st, uint64_t *level) CUSTOS_WUR;
/* Atomically add one failure and return the new count (another process may
 * be counting too). */
CK_RV store_user_fail(store *st, const char *name, uint32_t *failures) CUSTOS_WUR;
/* Set failures back to 0 (no write when already 0). */
CK_RV store_user_reset_failures(store *st, const char *name) CUSTOS_WUR;

/* ---- objects ------------------------------------------------------------ */
typedef struct store_attr {
    CK_ATTRIBUTE_TYPE type;
    uint8_t *value;   /* insert/update: plaintext (borrowed); load: owned */
    size_t len;
    bool secret;      /* insert/update: seal it; load: value is the sealed blob */
} store_attr;

typedef struct store_object {
    CK_OBJECT_HANDLE handle;
    size_t n;
    store_attr *attrs; /* owned; free with store_object_release */
} store_object;

/* Insert an object and all its attributes in one durable transaction (on
 * disk before return). Handles are never reused (AUTOINCREMENT).
 * mk may be NULL only when no attribute is secret (else
 * CKR_USER_NOT_LOGGED_IN, and nothing is written). */
CK_RV store_object_insert(store *st, const uint8_t *mk, const store_attr *attrs,
                          size_t n, CK_OBJECT_HANDLE *out) CUSTOS_WUR;
/* The audit record of the call that makes an object (docs/audit.md, "The
 * outbox"). When names_object is set, the new object's handle is OR'ed into
 * row.key_handle before the row is stored (the caller leaves there the bits
 * of the handle the client sees above the row's). */
typedef struct store_audit_rec {
    audit_row row;
    bool names_object;
} store_audit_rec;
/* store_object_insert with rec put in the audit outbox in the same
 * transaction (rec NULL: none): the object and its record are on disk
 * together or not at all. */
CK_RV store_object_insert_audited(store *st, const uint8_t *mk, const store_attr *attrs,
                                  size_t n, store_audit_rec *rec,
                                  CK_OBJECT_HANDLE *out) CUSTOS_WUR;
/* store_object_insert, guarded and combined, for key-family rotation
 * (docs/key-families.md): in ONE durable write transaction, insert the new
 * object unless an object already has attribute `unless` (checked under
 * the write lock, so that of racing processes exactly one inserts), and
 * write `upd` into the existing object upd_h (0: none), with the audit
 * record rec as for store_object_insert_audited (NULL: none).
 * CKR_ACTION_PROHIBITED, with nothing written, when `unless` matched. */
CK_RV store_object_insert_unless(store *st, const uint8_t *mk, const store_attr *attrs, size_t n,
                                 const CK_ATTRIBUTE *unless, CK_OBJECT_HANDLE upd_h,
                                 const store_attr *upd, size_t upd_n, store_audit_rec *rec,
                                 CK_OBJECT_HANDLE *out) CUSTOS_WUR;
/* Add n to the named counter (kept in meta, 8 bytes big-endian) atomically
 * across processes, but never beyond limit: *granted gets how much was
 * added (0..n) and *after the counter's value after it. */
CK_RV store_counter_add(store *st, const char *name, uint64_t n, uint64_t limit,
                        uint64_t *granted, uint64_t *after) CUSTOS_WUR;
/* The counter's value (0 when it was never added to). */
CK_RV store_counter_get(store *st, const char *name, uint64_t *value) CUSTOS_WUR;

/* CKR_OBJECT_HANDLE_INVALID when no such object. */
CK_RV store_object_load(store *st, CK_OBJECT_HANDLE h, store_object *out) CUSTOS_WUR;
void store_object_release(store_object *o);
/* Insert or replace the given attributes of an existing object, durably,
 * in one transaction. mk as for store_object_insert. */
CK_RV store_object_update(store *st, const uint8_t *mk, CK_OBJECT_HANDLE h,
                          const store_attr *attrs, size_t n) CUSTOS_WUR;
/* The same with the audit record of the change in the same transaction
 * (docs/audit.md, "The outbox"; rec NULL: none). */
CK_RV store_object_update_audited(store *st, const uint8_t *mk, CK_OBJECT_HANDLE h,
                                  const store_attr *attrs, size_t n,
                                  store_audit_rec *rec) CUSTOS_WUR;
/* CKR_OBJECT_HANDLE_INVALID when no such object. */
CK_RV store_object_delete(store *st, CK_OBJECT_HANDLE h) CUSTOS_WUR;
/* The same with the audit record of the delete in the same transaction:
 * a destroyed key and the record of its destruction are on disk together. */
CK_RV store_object_delete_audited(store *st, CK_OBJECT_HANDLE h,
                                  store_audit_rec *rec) CUSTOS_WUR;
/* Handles of the objects having every (type, value) of tmpl, compared as
 * bytes, from the index; n == 0 means every object. Ascending handle
 * order. *out is malloc'ed (free()), NULL when *count is 0. Secret
 * attributes never match (the core filters those itself). */
CK_RV store_find(store *st, const CK_ATTRIBUTE *tmpl, size_t n,
                 CK_OBJECT_HANDLE **out, size_t *count) CUSTOS_WUR;
/* A search that also reads, for each hit, the clear values of up to
 * STORE_FIND_SIDE further attributes ("side values": what the caller needs
 * to filter the hits, such as CKA_PRIVATE), in the same statement and so on
 * the same snapshot. Hit i's side value j is found->arena + off[j], len[j]
 * bytes; len[j] is STORE_SIDE_ABSENT when the object lacks the attribute or
 * holds it sealed. Free with store_found_free. */
#define STORE_FIND_SIDE 2
#define STORE_SIDE_ABSENT SIZE_MAX
typedef struct {
    CK_OBJECT_HANDLE handle;
    size_t off[STORE_FIND_SIDE];
    size_t len[STORE_FIND_SIDE];
} store_hit;
typedef struct {
    store_hit *hits;
    size_t count;
    uint8_t *arena;
    size_t arena_len;
} store_found;
CK_RV store_find_with(store *st, const CK_ATTRIBUTE *tmpl, size_t n, const CK_ATTRIBUTE_TYPE *side,
                      size_t nside, store_found *found) CUSTOS_WUR;
void store_found_free(store_found *found);
/* The clear value of one attribute of object h into buf (cap bytes):
 * *found false when absent or sealed; CKR_BUFFER_TOO_SMALL (with *len the
 * size) when it does not fit. */
CK_RV store_object_attr(store *st, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, uint8_t *buf,
                        size_t cap, size_t *len, bool *found) CUSTOS_WUR;
/* Number of objects in the token. */
CK_RV store_object_count(store *st, uint64_t *out) CUSTOS_WUR;

/* Open a sealed attribute value from store_object_load. out must hold
 * len - CRYPTO_SEAL_OVERHEAD bytes (secure memory, the caller's).
 * CKR_ENCRYPTED_DATA_INVALID if the blob does not authenticate under this
 * token, object and attribute (a moved or edited value). Does not take the
 * store's lock (it reads only the serial, fixed at open). */
CK_RV store_unseal(store *st, const uint8_t *mk, CK_OBJECT_HANDLE h,
                   CK_ATTRIBUTE_TYPE type, const uint8_t *blob, size_t len,
                   uint8_t *out) CUSTOS_WUR;

/* Sealing of the master key for a user (AAD names token serial and user). */
CK_RV store_seal_mk(const char *serial, const char *user, const uint8_t *kek,
                    const uint8_t mk[STORE_MK_LEN],
                    uint8_t out[STORE_SEALED_MK_LEN]) CUSTOS_WUR;
/* CKR_PIN_INCORRECT when the sealed key does not open under kek. */
CK_RV store_unseal_mk(const char *serial, const char *user, const uint8_t *kek,
                      const uint8_t in[STORE_SEALED_MK_LEN],
                      uint8_t mk[STORE_MK_LEN]) CUSTOS_WUR;

/* ---- small key/value table for token metadata --------------------------- */
/* get: *val is malloc'ed (free(); non-NULL even for an empty value); a key
 * that is not there gives CKR_OK with *val NULL and *len 0.
 * put: insert or replace; the key "magic" is the store's own
 * (CKR_ARGUMENTS_BAD). store_reinit leaves this table alone. */
CK_RV store_meta_get(store *st, const char *key, uint8_t **val, size_t *len) CUSTOS_WUR;
CK_RV store_meta_put(store *st, const char *key, const uint8_t *val, size_t len) CUSTOS_WUR;

#endif
