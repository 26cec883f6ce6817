/* State shared by the core's files, nowhere else. */
#ifndef CUSTOS_CORE_INTERNAL_H
#define CUSTOS_CORE_INTERNAL_H

#include "core/core.h"

/* The session table is split by handle (handle % SESSION_SHARDS), each
 * part with its own lock on its own cache line: every call looks its
 * session up, and threads working on different sessions then share no lock
 * (one table lock was written twice per operation by every thread). */
#define SESSION_SHARDS 16
typedef struct session_shard {
    pthread_mutex_t lock;
    hmap map;                  /* CK_SESSION_HANDLE -> session* */
} __attribute__((aligned(64))) session_shard;

typedef struct library {
    pthread_mutex_t lock;      /* slots[], next_session, initialized */
    bool initialized;
    pid_t pid;
    custos_config cfg;
    token *slots[CUSTOS_MAX_SLOTS]; /* by slot id; NULL where no slot */
    uint64_t next_session;
    session_shard shards[SESSION_SHARDS]; /* lock order: lib.lock, then a shard */
} library;


extern library lib;

static inline session_shard *session_shard_of(CK_SESSION_HANDLE h)
{
    return &lib.shards[h % SESSION_SHARDS];
}

/* Names of the two standard login identities in the store, and of the
 * anonymous failure counters of PIN-selected login (never a login). */
#define USER_NAME_SO "so"
#define USER_NAME_USER "user"
#define COUNTER_SO "*so"
#define COUNTER_USER "*user"

/* Open a slot's store if it is not open yet. Called with t->lock held. */
CK_RV token_open_locked(token *t) CUSTOS_WUR;
/* Token of a session, must be initialised (not damaged). */
static inline bool token_ready(const token *t) { return t->st != NULL && !t->damaged; }

#endif

/* Check a PIN against a user's sealed master key, counting failures in the
 * store (shared by every process): CKR_PIN_LOCKED once max_retries wrong
 * PINs were given, CKR_PIN_INCORRECT for a wrong PIN (this attempt may be
 * the one that locks), CKR_USER_PIN_NOT_INITIALIZED when no such user.
 * On success the master key is in mk (STORE_MK_LEN bytes, the caller's
 * secure memory) and the failure count is back to 0. Takes no token lock:
 * the KDF is slow and the store serialises itself. */
CK_RV login_verify_pin(token *t, const char *name, const uint8_t *pin, size_t pinlen,
                       uint8_t *mk) CUSTOS_WUR;
/* ---- objects, for the core's own use (core/object.c) ---------------------- */
/* The cached token object of a store row, with a reference (t->lock held). */
CK_RV object_load_row_locked(token *t, CK_OBJECT_HANDLE row, object **out) CUSTOS_WUR;
/* Open o's sealed attributes (t->lock held, logged in). */
CK_RV object_open_locked(token *t, object *o) CUSTOS_WUR;
/* object_key_copy with t->lock held. */
CK_RV object_key_copy_locked(token *t, object *o, uint8_t *buf, size_t cap, size_t *len) CUSTOS_WUR;
/* object_add with store_object_insert_unless's guard and companion update. */
CK_RV object_add_guarded(session *s, attr_list *attrs, const CK_ATTRIBUTE *unless,
                         CK_OBJECT_HANDLE upd_row, const store_attr *upd, size_t upd_n,
                         CK_OBJECT_HANDLE *out) CUSTOS_WUR;
/* The same when the token itself makes the object (a key-family rotation):
 * the session's R/O state and role are not the question. */
CK_RV object_add_internal(session *s, attr_list *attrs, const CK_ATTRIBUTE *unless,
                          CK_OBJECT_HANDLE upd_row, const store_attr *upd, size_t upd_n,
                          CK_OBJECT_HANDLE *out) CUSTOS_WUR;

/* ---- key families (core/families.c; docs/key-families.md) ----------------- */
/* May a key with these attributes be used now: to protect (encrypt, sign,
 * wrap: protect = true) or to open? Its state, CKA_CUSTOS_NOT_AFTER and
 * CKA_START_DATE / CKA_END_DATE: CKR_KEY_FUNCTION_NOT_PERMITTED. */
CK_RV family_check_use_locked(const attr_list *l, bool protect) CUSTOS_WUR;
/* The seconds [*from, *until) during which those dates and
 * CKA_CUSTOS_NOT_AFTER allow the use (the rule family_check_use_locked
 * applies, and how long a session may keep using a key it checked). */
void family_use_window(const attr_list *l, bool protect, int64_t *from, int64_t *until);
/* C_GenerateKey of version 1 of a family: checks and stamps l, and sets
 * *unless (pointing into idbuf) to the guard of the insert. */
CK_RV family_prepare_new(session *s, const CK_ATTRIBUTE *t, CK_ULONG n, attr_list *l,
                         CK_ATTRIBUTE *unless, char *idbuf, size_t idcap) CUSTOS_WUR;
/* Make the next version of a family (exactly one, whoever races); expect
 * (not 0): only if that version is still the current one. */
CK_RV family_rotate(session *s, const char *family, CK_ULONG expect, CK_ULONG *new_version) CUSTOS_WUR;
/* The same, saying whether the token does it by itself (for the audit). */
CK_RV family_rotate_as(session *s, const char *family, CK_ULONG expect, bool automatic,
                       CK_ULONG *new_version) CUSTOS_WUR;
/* Rotate o's family if o is its current version and its period passed. */
CK_RV family_maybe_rotate(session *s, object *o) CUSTOS_WUR;
/* Rotate every family whose period passed; *rotated counts them. */
CK_RV family_rotate_due(session *s, CK_ULONG *rotated) CUSTOS_WUR;
/* Count one encryption with a key (store row or session handle), giving
 * its number (unique per key): CKR_KEY_EXHAUSTED past 2^32. */
CK_RV family_count_encryption_seq(token *t, CK_OBJECT_HANDLE row, uint64_t *seq) CUSTOS_WUR;
/* The same through the session's lease of counts (the hot path). */
CK_RV session_count_encryption(session *s, CK_OBJECT_HANDLE row, uint64_t *seq) CUSTOS_WUR;
void family_counters_free_locked(token *t);

/* Load (or make, for a token from before schema 2) the token-wide PIN
 * salt into t->pin_salt. Called with t->lock held, store open. */
CK_RV login_load_salt(token *t) CUSTOS_WUR;
