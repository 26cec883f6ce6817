/* State shared by the core's files, nowhere else. */
#ifndef CUSTOS_CORE_INTERNAL_H
#define CUSTOS_CORE_INTERNAL_H

#include "core/core.h"

typedef struct library {
    pthread_mutex_t lock;      /* slots[] and the session table */
    bool initialized;
    pid_t pid;
    custos_config cfg;
    token *slots[CUSTOS_MAX_SLOTS]; /* by slot id; NULL where no slot */
    hmap sessions;             /* CK_SESSION_HANDLE -> session* */
    uint64_t next_session;
} library;

extern library lib;

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
/* Load (or make, for a token from before schema 2) the token-wide PIN
 * salt into t->pin_salt. Called with t->lock held, store open. */
CK_RV login_load_salt(token *t) CUSTOS_WUR;
