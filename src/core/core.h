/* The core: library state, slots and tokens, sessions and login, objects and
 * operations. The api/ layer checks a caller's arguments and hands off to
 * the functions here; only the core talks to store/ and policy/.
 *
 * Locking (no lock is ever held across crypto work on data):
 *   lib.lock      the slot table and the session table; held briefly.
 *   session.lock  one session's operation state; held for the call.
 *   token.lock    login state, master key, object caches, session counts.
 * Order: session.lock before token.lock; lib.lock is never taken while
 * holding token.lock. */
#ifndef CUSTOS_CORE_H
#define CUSTOS_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "pkcs11.h"
#include "custos.h"
#include "util/guard.h"
#include "util/hmap.h"
#include "core/attr.h"
#include "mech/mech.h"
#include "policy/config.h"
#include "store/store.h"
#include "audit/audit.h"

#define CUSTOS_MANUFACTURER "Custos project"
#define CUSTOS_LIBRARY_DESC "Custos PKCS#11 token"
#define CUSTOS_MODEL "Custos soft"
#define CUSTOS_MAX_SLOTS 64

/* Object handles. Session objects carry SESSION_OBJECT_BIT. Token objects
 * are the store's row id (below 2^32) and, for private objects, a tag of
 * the login in bits 32..47, so that a private object's handle from before a
 * C_Logout stays invalid after the next C_Login (PKCS#11 3.2 sec. 5.6). */
#define SESSION_OBJECT_BIT (1ULL << 48)
#define HANDLE_ROW_MASK 0xFFFFFFFFULL

/* How a call is audited (docs/audit.md): never, always, only when it
 * fails (an ...Init or ...Update), or as a data operation (aggregated when
 * it succeeds). */
typedef enum aud_class {
    AUD_NONE = 0,
    AUD_ALWAYS,
    AUD_FAILURE,
    AUD_DATA,
} aud_class;

/* What the audit trail says about the key of an operation, captured at
 * ...Init and reported by the call that completes it. */
typedef struct aud_key {
    CK_OBJECT_HANDLE handle;
    char label[64];
    char id[65];
    char family[64];
    CK_ULONG version;
    bool has_digest;
    uint8_t digest[32];   /* SHA-256 of the AAD: the resource */
} aud_key;

/* An empty description, strings cut at their first byte (cheaper than a
 * memset of the whole on the hot path; strings are read up to their NUL). */
static inline void aud_key_clear(aud_key *k)
{
    k->handle = 0;
    k->label[0] = '\0';
    k->id[0] = '\0';
    k->family[0] = '\0';
    k->version = 0;
    k->has_digest = false;
}

typedef enum login_state {
    LOGIN_NONE = 0,
    LOGIN_USER,
    LOGIN_SO,
} login_state;

typedef struct object {
    CK_OBJECT_HANDLE handle;
    atomic_uint refs;
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE kt;           /* CK_UNAVAILABLE_INFORMATION when not a key */
    bool is_token;
    bool is_private;
    char *acl;                /* CKA_CUSTOS_ALLOWED_USERS, NULL when none */
    aud_key *aud;             /* how the audit trail names it (lazy) */
    CK_SESSION_HANDLE owner;  /* session objects: the creating session */
    attr_list attrs;
} object;

typedef struct token {
    CK_SLOT_ID slot_id;
    char path[PATH_MAX + 32];
    pthread_mutex_t lock;
    store *st;                /* NULL when not initialised */
    store_token_info info;
    login_state login;
    char user[64];            /* who is logged in (docs/roles.md) */
    unsigned long roles;      /* their CUSTOS_ROLE_* */
    uint8_t pin_salt[16];     /* token-wide PIN salt (from the store) */
    uint8_t *mk;              /* secmem, STORE_MK_LEN bytes, while logged in */
    unsigned sessions;        /* open sessions of this process */
    unsigned rw_sessions;
    hmap cache;               /* token objects: handle -> object* */
    uint64_t cache_version;   /* store data_version the cache reflects */
    uint64_t dv_checked_ms;   /* when data_version was last asked */
    _Atomic uint64_t gen;     /* bumped whenever a cached object may have
                                 changed or gone: sessions' key caches */
    _Atomic uint64_t login_gen; /* bumped at every login and logout */
    hmap sobjs;               /* session objects: handle -> object* */
    uint32_t login_epoch;     /* bumped at every logout: tags private handles */
    hmap counters;            /* per-key encryption counters (families.c) */
    audit_log *audit;         /* NULL when audit is off or could not open */
    CK_RV audit_rv;           /* last audit failure (CKR_OK when healthy) */
    uint64_t next_sobj;
    bool damaged;             /* the file could not be opened */
    CK_RV damage_rv;
} token;

/* One active operation of a kind (encrypt, decrypt, sign, verify, digest). */
typedef enum op_state {
    OP_IDLE = 0,
    OP_INIT,     /* ...Init done, no data call yet */
    OP_MULTI,    /* an ...Update happened: only Update/Final may follow */
} op_state;

typedef struct op {
    op_state state;
    const mech_desc *mech;
    mech_ctx *ctx;
    aud_key key;              /* for the record of the completing call */
    /* A finished context kept for reuse by the next ...Init of a row with
     * the same ops (mech_ops.reinit): no allocation on the hot path. */
    mech_ctx *spare;
    const mech_ops *spare_ops;
} op;

/* A message-based encryption or decryption context (PKCS#11 3.0 sec.
 * 5.13): the key stays copied in secure memory for the context's life. */
typedef struct msg_op {
    bool active;
    bool in_message;          /* between ...MessageBegin and the last Next */
    const mech_desc *mech;
    uint8_t *key;             /* secmem */
    size_t keylen;
    CK_KEY_TYPE kt;
    aud_key akey;
    mech_ctx *ctx;
    size_t held;              /* decryption: ciphertext given so far */
    bool xor_ready;           /* CKG_GENERATE_COUNTER_XOR base drawn */
    uint8_t xor_base[12];
} msg_op;

typedef struct find_state {
    bool active;
    CK_OBJECT_HANDLE *handles;
    size_t n;
    size_t pos;
} find_state;

typedef struct session {
    CK_SESSION_HANDLE handle;
    CK_SLOT_ID slot_id;
    token *tok;
    CK_FLAGS flags;           /* CKF_RW_SESSION | CKF_SERIAL_SESSION */
    pthread_mutex_t lock;
    atomic_uint refs;
    bool closed;
    op ops[MECH_OP_COUNT];
    msg_op msg[2];            /* message-based: [0] encrypt, [1] decrypt */
    find_state find;
    /* The audit record of the call in progress (entry layer). */
    audit_event *ev;
    const aud_key *ev_key;    /* audit_use_op_key: the key's names, copied into
                                 ev only if the event is written */
    aud_class aud;
    bool size_query;          /* the call only reported a length */
    bool ev_outboxed;         /* the record went into the token's audit
                                 outbox with the change it records */
    struct crypto_md *aad_md; /* SHA-256 of AADs for the audit (lazy) */
    uint8_t last_aad[128];    /* the last AAD hashed, and its digest */
    size_t last_aad_len;
    uint8_t last_digest[32];
    char ev_user[64];         /* the user a record names, when the call
                                 changes who is logged in */
    /* Hot-path state, this session's own (no token lock):
     * - a lease of a key's encryption counts (families.c); */
    CK_OBJECT_HANDLE lease_row;
    uint64_t lease_next, lease_end, lease_size;
    /* - the key of the last operation, valid while the token's object
     *   generation is unchanged (op.c); */
    CK_OBJECT_HANDLE kc_h;
    const mech_desc *kc_mech;
    CK_ATTRIBUTE_TYPE kc_usage;
    uint64_t kc_gen;
    uint8_t *kc_key;          /* secmem, KEY_MAX_BYTES */
    size_t kc_len;
    CK_KEY_TYPE kc_kt;
    aud_key kc_aud;
    int64_t kc_from, kc_until; /* seconds: usable in [from, until) */
    /* - the data operations recorded but not yet handed to the audit log
     *   (auditing.c): one pending aggregate. */
    audit_event pend;
    char pend_user[64];
    uint64_t pend_ms;
    uint64_t pend_who_gen;     /* who_gen its user was read at; 0: compare names */
    /* - who is logged in, as of login_gen (auditing.c). */
    uint64_t who_gen;
    char who[64];
    unsigned long who_roles;
    /* - random bytes for the CKA_UNIQUE_ID of objects this session makes
     *   (object.c): fetched 16 ids at a time. Public values, not secrets;
     *   a child after fork() starts with new sessions. */
    uint8_t uid_pool[16 * 16];
    size_t uid_left;
} session;

/* ---- library (core/library.c) ------------------------------------------ */
CK_RV core_initialize(CK_C_INITIALIZE_ARGS_PTR args) CUSTOS_WUR;
CK_RV core_finalize(void) CUSTOS_WUR;
/* CKR_CRYPTOKI_NOT_INITIALIZED unless initialised in this process. */
CK_RV core_check_initialized(void) CUSTOS_WUR;
const custos_config *core_config(void);

/* ---- slots and tokens (core/slot.c, core/token.c) ------------------------- */
CK_RV core_slot_list(bool token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) CUSTOS_WUR;
/* The token of a slot (opening it on first use). CKR_SLOT_ID_INVALID. */
CK_RV core_token(CK_SLOT_ID id, token **out) CUSTOS_WUR;
CK_RV core_slot_info(CK_SLOT_ID id, CK_SLOT_INFO_PTR info) CUSTOS_WUR;
CK_RV core_token_info(CK_SLOT_ID id, CK_TOKEN_INFO_PTR info) CUSTOS_WUR;
CK_RV core_init_token(CK_SLOT_ID id, const uint8_t *pin, size_t pinlen,
                      const uint8_t label[32]) CUSTOS_WUR;
/* Rescan the store directory for tokens made by other processes. */
CK_RV core_slots_refresh(void) CUSTOS_WUR;
void token_free(token *t);

/* ---- sessions (core/session.c) ------------------------------------------ */
CK_RV core_open_session(CK_SLOT_ID id, CK_FLAGS flags, CK_SESSION_HANDLE_PTR out) CUSTOS_WUR;
CK_RV core_close_session(CK_SESSION_HANDLE h) CUSTOS_WUR;
CK_RV core_close_all_sessions(CK_SLOT_ID id) CUSTOS_WUR;
/* Look a session up, take a reference and its lock. */
CK_RV core_session_acquire(CK_SESSION_HANDLE h, session **out) CUSTOS_WUR;
void core_session_release(session *s);
CK_RV core_session_info(session *s, CK_SESSION_INFO_PTR info) CUSTOS_WUR;
/* Free a session nobody else refers to any more (C_Finalize, last unref). */
void session_destroy(session *s);
/* End every operation of the session (and its find), freeing all state. */
void session_reset_ops(session *s);
/* End one operation (its context may be kept as the spare). */
void op_end(op *o);

/* ---- login (core/login.c) ----------------------------------------------- */
/* C_Login: the PIN selects the user; C_LoginUser (name != NULL) names it. */
CK_RV core_login(session *s, CK_USER_TYPE type, const uint8_t *pin, size_t pinlen,
                 const char *name) CUSTOS_WUR;
CK_RV core_logout(session *s) CUSTOS_WUR;
CK_RV core_init_pin(session *s, const uint8_t *pin, size_t pinlen) CUSTOS_WUR;
CK_RV core_set_pin(session *s, const uint8_t *old, size_t oldlen,
                   const uint8_t *pin, size_t pinlen) CUSTOS_WUR;
/* Seal mk for a user under a PIN into u (token-wide salt, configured KDF,
 * a lookup tag for PIN-selected login). */
CK_RV login_seal_for(const token *t, const char *name, CK_USER_TYPE type, unsigned long roles,
                     const uint8_t *pin, size_t pinlen, const uint8_t *mk,
                     store_user *u) CUSTOS_WUR;
/* The anonymous failure counters of PIN-selected login (docs/roles.md). */
CK_RV login_make_counters(token *t) CUSTOS_WUR;

/* What a role may do (docs/roles.md). Not logged in: the standard's rules
 * alone apply (CKR_OK here). Logged in without the role:
 * CKR_ACTION_PROHIBITED. */
typedef enum role_action {
    ACT_ENCRYPT, ACT_DECRYPT, ACT_SIGN, ACT_VERIFY, ACT_DIGEST_KEY,
    ACT_WRAP, ACT_UNWRAP, ACT_CREATE, ACT_TOKEN_WRITE, ACT_COUNT
} role_action;
CK_RV role_check(const token *t, role_action a) CUSTOS_WUR;
/* May the logged-in identity see object o at all (privacy, audit role,
 * CKA_CUSTOS_ALLOWED_USERS)? Called with t->lock held. */
bool role_sees(const token *t, const object *o);
/* Called with t->lock held: forget the login (wipe mk, drop caches). */
void login_clear_locked(token *t);

/* ---- user management (core/users.c; pkcs11/custos.h) --------------------- */
CK_RV core_user_add(session *s, const CK_UTF8CHAR *name, CK_ULONG namelen, CK_ULONG roles,
                    const CK_UTF8CHAR *pin, CK_ULONG pinlen) CUSTOS_WUR;
CK_RV core_user_remove(session *s, const CK_UTF8CHAR *name, CK_ULONG namelen) CUSTOS_WUR;
CK_RV core_user_set_roles(session *s, const CK_UTF8CHAR *name, CK_ULONG namelen,
                          CK_ULONG roles) CUSTOS_WUR;
CK_RV core_user_set_pin(session *s, const CK_UTF8CHAR *name, CK_ULONG namelen,
                        const CK_UTF8CHAR *pin, CK_ULONG pinlen) CUSTOS_WUR;
CK_RV core_user_enable(session *s, const CK_UTF8CHAR *name, CK_ULONG namelen, bool enabled) CUSTOS_WUR;
CK_RV core_user_list(session *s, CK_CUSTOS_USER_INFO_PTR list, CK_ULONG_PTR count) CUSTOS_WUR;
CK_RV core_key_rotate(session *s, const CK_UTF8CHAR *family, CK_ULONG len, CK_ULONG_PTR version) CUSTOS_WUR;
CK_RV core_key_rotate_due(session *s, CK_ULONG_PTR rotated) CUSTOS_WUR;

/* ---- objects (core/object.c, core/find.c) ------------------------------- */
/* Find an object visible to the session; takes a reference. */
CK_RV object_get(session *s, CK_OBJECT_HANDLE h, object **out) CUSTOS_WUR;
/* The same for a data operation (hot): the cache is checked against other
 * processes' commits at most every 50 ms instead of on every call. */
CK_RV object_get_mode(session *s, CK_OBJECT_HANDLE h, bool hot, object **out) CUSTOS_WUR;
/* The audit description of o (t->lock held): see core/auditing.c. */
void audit_describe_locked(object *o, aud_key *k);
/* Is o the current version of a family whose rotation period has passed
 * (t->lock held)? */
bool family_due_locked(const attr_list *l);
void object_unref(object *o);
/* The handle a client sees for a token object row. */
CK_OBJECT_HANDLE object_client_handle(const token *t, CK_OBJECT_HANDLE row, bool is_private);
/* Copy the key bytes of a key object into buf (cap bytes; the caller
 * wipes it), unsealing on first use: CKR_USER_NOT_LOGGED_IN without the
 * master key, CKR_KEY_SIZE_RANGE if it does not fit. */
#define KEY_MAX_BYTES 512
CK_RV object_key_copy(token *t, object *o, uint8_t *buf, size_t cap, size_t *len) CUSTOS_WUR;
/* Read a boolean / ulong attribute of a shared object under the token lock. */
bool object_bool(token *t, object *o, CK_ATTRIBUTE_TYPE type, bool dflt);
/* Run fn over the object's attributes with the token lock held. */
CK_RV object_with_attrs(token *t, object *o, CK_RV (*fn)(attr_list *l, void *arg), void *arg) CUSTOS_WUR;
/* Make an object from a complete attribute list (takes ownership of
 * attrs on success): persists token objects, registers session objects. */
CK_RV object_add(session *s, attr_list *attrs, CK_OBJECT_HANDLE *out) CUSTOS_WUR;
CK_RV core_create_object(session *s, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                         CK_OBJECT_HANDLE_PTR out) CUSTOS_WUR;
CK_RV core_copy_object(session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                       CK_OBJECT_HANDLE_PTR out) CUSTOS_WUR;
CK_RV core_destroy_object(session *s, CK_OBJECT_HANDLE h) CUSTOS_WUR;
CK_RV core_get_object_size(session *s, CK_OBJECT_HANDLE h, CK_ULONG_PTR size) CUSTOS_WUR;
CK_RV core_get_attributes(session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n) CUSTOS_WUR;
CK_RV core_set_attributes(session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n) CUSTOS_WUR;
CK_RV core_find_init(session *s, CK_ATTRIBUTE_PTR t, CK_ULONG n) CUSTOS_WUR;
CK_RV core_find(session *s, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count) CUSTOS_WUR;
CK_RV core_find_final(session *s) CUSTOS_WUR;
/* Destroy the session objects a session owns (on close). */
void object_drop_session_objects(token *t, CK_SESSION_HANDLE owner);
/* Were other processes' commits checked less than 50 ms ago? */
bool object_cache_fresh(const token *t);
/* Drop cached token objects (on logout, or when another process changed
 * the store). Called with t->lock held. */
void object_cache_flush_locked(token *t);

/* ---- operations (core/op.c) --------------------------------------------- */
/* Resolve and check a mechanism for an operation kind: CKR_MECHANISM_INVALID
 * when unknown, not for this kind, or legacy without policy. */
CK_RV op_mech(CK_MECHANISM_PTR m, mech_op kind, const mech_desc **out) CUSTOS_WUR;
/* May the logged-in identity do this kind of operation (docs/roles.md)? */
CK_RV op_role(const token *t, mech_op kind) CUSTOS_WUR;
/* An AEAD encryption with an IV or nonce the caller chose: CKR_OK, or
 * CKR_ACTION_PROHIBITED (noted in the audit record) under [policy]
 * caller_iv = refuse. The one check for C_EncryptInit, message-based
 * encryption and authenticated key wrap (docs/mechanisms.md). */
CK_RV op_caller_iv_allowed(session *s) CUSTOS_WUR;
CK_RV core_op_init(session *s, mech_op kind, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key) CUSTOS_WUR;
/* C_Encrypt, C_Decrypt, C_Sign (one-shot data calls). */
CK_RV core_op_oneshot(session *s, mech_op kind, CK_BYTE_PTR in, CK_ULONG inlen,
                      CK_BYTE_PTR out, CK_ULONG_PTR outlen) CUSTOS_WUR;
CK_RV core_op_update(session *s, mech_op kind, CK_BYTE_PTR in, CK_ULONG inlen,
                     CK_BYTE_PTR out, CK_ULONG_PTR outlen) CUSTOS_WUR;
CK_RV core_op_final(session *s, mech_op kind, CK_BYTE_PTR out, CK_ULONG_PTR outlen) CUSTOS_WUR;
/* C_Verify / C_VerifyFinal. */
CK_RV core_verify(session *s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                  CK_ULONG siglen, bool oneshot) CUSTOS_WUR;
CK_RV core_digest_key(session *s, CK_OBJECT_HANDLE key) CUSTOS_WUR;
/* Look up a key for mechanism d and use `usage` (0: none), copying its
 * bytes into buf (KEY_MAX_BYTES; the caller wipes key->len bytes) and
 * describing it in *key. A missing
 * object gives invalid_rv (CKR_KEY_HANDLE_INVALID, or the wrapping
 * variants); an unfit one CKR_KEY_TYPE_INCONSISTENT,
 * CKR_KEY_FUNCTION_NOT_PERMITTED or CKR_KEY_SIZE_RANGE. */
CK_RV op_key(session *s, CK_OBJECT_HANDLE h, const mech_desc *d, CK_ATTRIBUTE_TYPE usage,
             CK_RV invalid_rv, mech_key *key, uint8_t *buf, aud_key *ak) CUSTOS_WUR;

/* ---- message-based encryption, authenticated wrap (core/messages.c) ------- */
CK_RV core_msg_init(session *s, bool encrypt, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) CUSTOS_WUR;
CK_RV core_msg_final(session *s, bool encrypt) CUSTOS_WUR;
void msg_end(msg_op *m);
CK_RV core_encrypt_message(session *s, const void *param, CK_ULONG plen, const uint8_t *aad,
                           size_t aadlen, const uint8_t *in, size_t inlen, CK_BYTE_PTR out,
                           CK_ULONG_PTR outlen) CUSTOS_WUR;
CK_RV core_decrypt_message(session *s, const void *param, CK_ULONG plen, const uint8_t *aad,
                           size_t aadlen, const uint8_t *in, size_t inlen, CK_BYTE_PTR out,
                           CK_ULONG_PTR outlen) CUSTOS_WUR;
CK_RV core_message_begin(session *s, bool encrypt, const void *param, CK_ULONG plen,
                         const uint8_t *aad, size_t aadlen) CUSTOS_WUR;
CK_RV core_message_next(session *s, bool encrypt, const void *param, CK_ULONG plen,
                        const uint8_t *in, size_t inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen,
                        CK_FLAGS flags) CUSTOS_WUR;
CK_RV core_wrap_authenticated(session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wrapping,
                              CK_OBJECT_HANDLE key, const uint8_t *ad, size_t adlen, CK_BYTE_PTR out,
                              CK_ULONG_PTR outlen) CUSTOS_WUR;
CK_RV core_unwrap_authenticated(session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping,
                                const uint8_t *wrapped, size_t wrappedlen, CK_ATTRIBUTE_PTR t,
                                CK_ULONG n, const uint8_t *ad, size_t adlen,
                                CK_OBJECT_HANDLE_PTR out) CUSTOS_WUR;

/* ---- keys (core/keys.c) --------------------------------------------------- */
/* The value of key, checked wrappable by the wrapping key wo (extractable, trusted
 * wrapping, CKA_WRAP_TEMPLATE), into kv; *kobj gets a reference. */
CK_RV core_wrappable_value(session *s, object *wo, CK_OBJECT_HANDLE key, uint8_t *kv, size_t cap,
                           size_t *kvlen, object **kobj) CUSTOS_WUR;
/* C_UnwrapKey through an AEAD decryption with mechanism m. */
CK_RV core_unwrap_with(session *s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE unwrapping,
                       const uint8_t *wrapped, size_t wrappedlen, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                       CK_OBJECT_HANDLE_PTR out) CUSTOS_WUR;
CK_RV core_generate_key(session *s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                        CK_OBJECT_HANDLE_PTR out) CUSTOS_WUR;
CK_RV core_wrap_key(session *s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wrapping,
                    CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR outlen) CUSTOS_WUR;
CK_RV core_unwrap_key(session *s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE unwrapping,
                      CK_BYTE_PTR wrapped, CK_ULONG wrappedlen, CK_ATTRIBUTE_PTR t,
                      CK_ULONG n, CK_OBJECT_HANDLE_PTR out) CUSTOS_WUR;
CK_RV core_random(CK_BYTE_PTR out, CK_ULONG len) CUSTOS_WUR;

/* ---- the audit record of a call (core/auditing.c) ------------------------- */
/* Open the record of a call (the entry layer, with the session locked).
 * Under [audit] required, a token whose audit trail failed refuses here. */
CK_RV core_audit_begin(session *s, const char *fn, aud_class cls, audit_event *ev) CUSTOS_WUR;
/* Close it with the call's result, write or aggregate it; returns rv, or
 * the audit failure when required and the record could not be written. */
CK_RV core_audit_end(session *s, CK_RV rv) CUSTOS_WUR;
/* The record of the call in progress as it will read if the change the
 * call is about to commit succeeds (rv CKR_OK), for the token's audit
 * outbox (names_object: see store_audit_rec); false when the call has no
 * record (no trail, no event). Call it without the token lock. Once the
 * change and rec are committed, core_audit_outbox_committed: the call's
 * end then writes no record of its own (unless the call fails after all),
 * and the log drains the outbox in time. */
bool core_audit_outbox_rec(session *s, store_audit_rec *rec, bool names_object);
void core_audit_outbox_committed(session *s);
/* A session-less call on a token (C_InitToken). */
void core_audit_token_event(token *t, const char *fn, CK_RV rv);
/* What the core learns during a call: */
void audit_note_key(session *s, token *t, object *o, aud_key *k);
void audit_note_resource(session *s, token *t, object *o);
void audit_note_aad(session *s, aud_key *k, const mech_desc *d, const CK_MECHANISM *m);
/* SHA-256 of an AAD for the record's resource, reusing the session's last
 * one when the AAD is the same; false when there is no AAD or no trail. */
bool audit_aad_digest(session *s, const uint8_t *aad, size_t n, uint8_t digest[32]);
void audit_note_target(session *s, const char *what);
void audit_note_denied(session *s, const char *why);
void audit_use_key(session *s, const aud_key *k);
/* The same for the key of an operation (k lives in the session until the
 * call ends): its label, id and family are copied into the event only when
 * the event is written or starts a new aggregate, not on every operation. */
void audit_use_op_key(session *s, const aud_key *k);
/* A key family rotated to version (by the token itself when automatic). */
void audit_rotation(session *s, const char *family, CK_ULONG version, bool automatic);
/* Open / flush / close a token's audit log. */
void audit_token_open_locked(token *t);
void audit_session_closed(token *t, CK_SESSION_HANDLE h);
/* Hand the session's pending run of data operations to the audit log. */
void audit_session_push(session *s);

/* ---- helpers shared by core files ----------------------------------------- */
/* Blank-pad src into a fixed-size PKCS#11 string field (no NUL). */
void pad_field(CK_UTF8CHAR *dst, size_t width, const char *src);
bool session_is_rw(const session *s);
login_state session_login(const session *s);

#endif
