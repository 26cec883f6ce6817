/* Login state, PINs and roles (PKCS#11 3.2 sec. 5.6; docs/roles.md):
 * C_Login, C_LoginUser, C_Logout, C_InitPIN, C_SetPIN, and what each role
 * may do. A PIN is never compared: stretched once (scrypt or PBKDF2, with
 * the token-wide salt), it gives a lookup tag that finds the user and a key
 * that unseals that user's copy of the master key; the AEAD tag check is the
 * constant-time comparison. Login state is per process, shared by all of its
 * sessions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/internal.h"
#include "crypto/crypto.h"
#include "util/secmem.h"

#define K_LEN 32
#define LOOKUP_LABEL "custos-pin-lookup-v1"
#define SEAL_LABEL "custos-pin-seal-v1"
#define SALT_META "pin_salt"

/* ---- derivations ------------------------------------------------------- */

static CK_RV stretch(const crypto_kdf_params *kdf, const uint8_t *salt, const uint8_t *pin,
                     size_t pinlen, uint8_t k[K_LEN])
{
    return crypto_kdf(kdf, pin, pinlen, salt, 16, k, K_LEN);
}

/* HMAC-SHA256(k, label || extra): two independent keys from one stretch. */
static CK_RV derive(const uint8_t k[K_LEN], const char *label, const void *extra, size_t extralen,
                    uint8_t out[32])
{
    crypto_hmac *h = NULL;
    CK_RV rv;
    GUARD(crypto_hmac_new(MD_SHA256, k, K_LEN, &h));
    GUARD_OUT(crypto_hmac_update(h, (const uint8_t *)label, strlen(label)));
    GUARD_OUT(crypto_hmac_update(h, extra, extralen));
    GUARD_OUT(crypto_hmac_final(h, out));
out:
    crypto_hmac_free(h);
    return rv;
}

static CK_RV lookup_tag(const uint8_t k[K_LEN], CK_USER_TYPE type, uint8_t tag[16])
{
    uint8_t full[32];
    uint8_t t = (uint8_t)type;
    CK_RV rv = derive(k, LOOKUP_LABEL, &t, 1, full);
    if (rv == CKR_OK)
        memcpy(tag, full, 16);
    secmem_wipe(full, sizeof(full));
    return rv;
}

CK_RV login_seal_for(const token *t, const char *name, CK_USER_TYPE type, unsigned long roles,
                     const uint8_t *pin, size_t pinlen, const uint8_t *mk, store_user *u)
{
    CK_RV rv;
    uint8_t k[K_LEN], kek[32];

    memset(u, 0, sizeof(*u));
    ENSURE(strlen(name) < sizeof(u->name) && name[0] != '\0' && name[0] != '*', CKR_ARGUMENTS_BAD);
    strcpy(u->name, name);
    u->type = type;
    u->roles = (uint32_t)roles;
    u->kdf = lib.cfg.kdf;
    memcpy(u->salt, t->pin_salt, sizeof(u->salt));
    GUARD_OUT(stretch(&u->kdf, u->salt, pin, pinlen, k));
    GUARD_OUT(lookup_tag(k, type, u->lookup));
    u->has_lookup = true;
    GUARD_OUT(derive(k, SEAL_LABEL, name, strlen(name), kek));
    GUARD_OUT(store_seal_mk(t->info.serial, name, kek, mk, u->sealed_mk));
out:
    secmem_wipe(k, sizeof(k));
    secmem_wipe(kek, sizeof(kek));
    return rv;
}

/* Unseal u's copy of the master key with k, the stretched PIN (rows made
 * before schema 2 used the stretched PIN itself as the sealing key). */
static CK_RV open_slot(const token *t, const store_user *u, const uint8_t k[K_LEN], uint8_t *mk)
{
    uint8_t kek[32];
    CK_RV rv = CKR_OK;
    if (u->has_lookup)
        rv = derive(k, SEAL_LABEL, u->name, strlen(u->name), kek);
    else
        memcpy(kek, k, sizeof(kek));
    if (rv == CKR_OK)
        rv = store_unseal_mk(t->info.serial, u->name, kek, u->sealed_mk, mk);
    secmem_wipe(kek, sizeof(kek));
    return rv;
}

CK_RV login_load_salt(token *t)
{
    uint8_t *v = NULL;
    size_t n = 0;
    GUARD(store_meta_get(t->st, SALT_META, &v, &n));
    if (v != NULL && n == sizeof(t->pin_salt)) {
        memcpy(t->pin_salt, v, n);
        free(v);
        return CKR_OK;
    }
    free(v);
    GUARD(crypto_random(t->pin_salt, sizeof(t->pin_salt)));
    return store_meta_put(t->st, SALT_META, t->pin_salt, sizeof(t->pin_salt));
}

CK_RV login_make_counters(token *t)
{
    static const struct {
        const char *name;
        CK_USER_TYPE type;
    } counters[] = { { COUNTER_SO, CKU_SO }, { COUNTER_USER, CKU_USER } };
    GUARD(store_meta_put(t->st, SALT_META, t->pin_salt, sizeof(t->pin_salt)));
    for (size_t i = 0; i < ARRAY_LEN(counters); i++) {
        store_user c;
        memset(&c, 0, sizeof(c));
        strcpy(c.name, counters[i].name);
        c.type = counters[i].type;
        c.flags = STORE_USER_DISABLED;
        GUARD(store_user_put(t->st, &c));
    }
    return CKR_OK;
}

/* ---- checking a PIN ------------------------------------------------------- */

static bool exhausted(const store_user *u) { return u->failures >= lib.cfg.pin_max_retries; }

/* A wrong PIN for u: count it where it belongs. */
static CK_RV count_failure(token *t, const char *name)
{
    uint32_t fails;
    CK_RV rv = store_user_fail(t->st, name, &fails);
    return rv == CKR_OK ? CKR_PIN_INCORRECT : rv;
}

CK_RV login_verify_pin(token *t, const char *name, const uint8_t *pin, size_t pinlen, uint8_t *mk)
{
    CK_RV rv;
    store_user u;
    uint8_t k[K_LEN];

    GUARD(store_user_get(t->st, name, &u));
    ENSURE(!(u.flags & STORE_USER_DISABLED) && !exhausted(&u), CKR_PIN_LOCKED);
    GUARD_OUT(stretch(&u.kdf, u.salt, pin, pinlen, k));
    rv = open_slot(t, &u, k, mk);
    if (rv == CKR_PIN_INCORRECT) {
        rv = count_failure(t, name);
        goto out;
    }
    GUARD_OUT(rv);
    if (u.failures != 0)
        GUARD_OUT(store_user_reset_failures(t->st, name));
out:
    secmem_wipe(k, sizeof(k));
    if (rv != CKR_OK)
        secmem_wipe(mk, STORE_MK_LEN);
    return rv;
}

/* PIN-selected login: one stretch per distinct (KDF, salt) among the users
 * of this type (normally one), then an index lookup of the tag. Users made
 * before schema 2 have no tag and are tried one by one. */
static CK_RV find_by_pin(token *t, CK_USER_TYPE type, const uint8_t *pin, size_t pinlen,
                         uint8_t *mk, store_user *found)
{
    CK_RV rv;
    char **names = NULL;
    size_t n = 0;
    const char *counter = type == CKU_SO ? COUNTER_SO : COUNTER_USER;
    store_user c, u, tried[4];
    size_t ntried = 0;
    uint8_t k[K_LEN], tag[16];
    bool matched = false, any = false;

    rv = store_user_get(t->st, counter, &c);
    if (rv == CKR_USER_PIN_NOT_INITIALIZED) {
        GUARD(login_make_counters(t));
        rv = store_user_get(t->st, counter, &c);
    }
    GUARD(rv);
    ENSURE(!exhausted(&c), CKR_PIN_LOCKED);
    GUARD(store_user_names(t->st, &names, &n));
    for (size_t i = 0; i < n && !matched; i++) {
        if (names[i][0] == '*' || store_user_get(t->st, names[i], &u) != CKR_OK || u.type != type)
            continue;
        any = true;
        if (!u.has_lookup) {
            /* A row from before schema 2: try it directly. */
            GUARD_OUT(stretch(&u.kdf, u.salt, pin, pinlen, k));
            if (open_slot(t, &u, k, mk) == CKR_OK) {
                *found = u;
                matched = true;
            }
            continue;
        }
        bool seen = false;
        for (size_t j = 0; j < ntried; j++)
            seen |= !memcmp(&tried[j].kdf, &u.kdf, sizeof(u.kdf)) &&
                    !memcmp(tried[j].salt, u.salt, sizeof(u.salt));
        if (seen || ntried == ARRAY_LEN(tried))
            continue;
        tried[ntried++] = u;
        GUARD_OUT(stretch(&u.kdf, u.salt, pin, pinlen, k));
        GUARD_OUT(lookup_tag(k, type, tag));
        rv = store_user_by_lookup(t->st, type, tag, found);
        if (rv == CKR_PIN_INCORRECT)
            continue;
        GUARD_OUT(rv);
        /* The tag matched: the slot must open (else the row was edited). */
        rv = open_slot(t, found, k, mk);
        ENSURE_OUT(rv != CKR_PIN_INCORRECT, CKR_DEVICE_ERROR);
        GUARD_OUT(rv);
        matched = true;
    }
    /* sec. 5.6 C_Login: no PIN of this type was ever set. */
    ENSURE_OUT(any, CKR_USER_PIN_NOT_INITIALIZED);
    if (!matched) {
        rv = count_failure(t, counter);
        goto out;
    }
    ENSURE_OUT(!(found->flags & STORE_USER_DISABLED) && !exhausted(found), CKR_PIN_LOCKED);
    if (c.failures != 0)
        GUARD_OUT(store_user_reset_failures(t->st, counter));
    if (found->failures != 0)
        GUARD_OUT(store_user_reset_failures(t->st, found->name));
    rv = CKR_OK;
out:
    secmem_wipe(k, sizeof(k));
    if (rv != CKR_OK)
        secmem_wipe(mk, STORE_MK_LEN);
    store_user_names_free(names, n);
    return rv;
}

void login_clear_locked(token *t)
{
    secmem_free(t->mk, STORE_MK_LEN);
    t->mk = NULL;
    if (t->login != LOGIN_NONE)
        t->login_epoch++;
    atomic_fetch_add(&t->login_gen, 1);
    t->login = LOGIN_NONE;
    t->user[0] = '\0';
    t->roles = 0;
    object_cache_flush_locked(t);
}

static bool ro_session_exists(const token *t) { return t->sessions > t->rw_sessions; }

/* Can this login start now (sec. 5.6 C_Login return values)? */
static CK_RV may_login_locked(const token *t, login_state want)
{
    if (t->login != LOGIN_NONE)
        return t->login == want ? CKR_USER_ALREADY_LOGGED_IN : CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
    if (want == LOGIN_SO && ro_session_exists(t))
        return CKR_SESSION_READ_ONLY_EXISTS;
    return CKR_OK;
}

CK_RV core_login(session *s, CK_USER_TYPE type, const uint8_t *pin, size_t pinlen, const char *name)
{
    CK_RV rv;
    token *t = s->tok;
    uint8_t *mk = NULL;
    login_state want;
    store_user u;

    switch (type) {
    case CKU_SO: want = LOGIN_SO; break;
    case CKU_USER: want = LOGIN_USER; break;
    /* No Custos key has CKA_ALWAYS_AUTHENTICATE, so there is never an
     * operation waiting for a context-specific login (sec. 5.6). */
    case CKU_CONTEXT_SPECIFIC: return CKR_OPERATION_NOT_INITIALIZED;
    default: return CKR_USER_TYPE_INVALID;
    }
    ENSURE(token_ready(t), CKR_TOKEN_NOT_RECOGNIZED);

    pthread_mutex_lock(&t->lock);
    rv = may_login_locked(t, want);
    pthread_mutex_unlock(&t->lock);
    GUARD(rv);

    memset(&u, 0, sizeof(u));
    mk = secmem_alloc(STORE_MK_LEN);
    ENSURE(mk != NULL, CKR_HOST_MEMORY);
    /* The KDF runs without the token lock: other sessions keep working. */
    if (name == NULL) {
        GUARD_OUT(find_by_pin(t, type, pin, pinlen, mk, &u));
    } else {
        if (s->ev != NULL)
            s->ev->user = name; /* the user asked for, whatever happens */
        rv = store_user_get(t->st, name, &u);
        if (rv == CKR_USER_PIN_NOT_INITIALIZED || (rv == CKR_OK && (name[0] == '*' || u.type != type))) {
            /* No such user of this type: answer as for a wrong PIN, and
             * count it as an anonymous failure. */
            rv = count_failure(t, type == CKU_SO ? COUNTER_SO : COUNTER_USER);
            goto out;
        }
        GUARD_OUT(rv);
        GUARD_OUT(login_verify_pin(t, name, pin, pinlen, mk));
    }

    pthread_mutex_lock(&t->lock);
    /* Another thread may have logged in meanwhile. */
    rv = may_login_locked(t, want);
    if (rv == CKR_OK) {
        t->mk = mk;
        mk = NULL;
        t->login = want;
        snprintf(t->user, sizeof(t->user), "%s", u.name);
        t->roles = u.roles;
        atomic_fetch_add(&t->login_gen, 1);
        /* What was cached before the login may be invisible or sealed. */
        object_cache_flush_locked(t);
    }
    pthread_mutex_unlock(&t->lock);
out:
    secmem_free(mk, STORE_MK_LEN);
    secmem_wipe(&u, sizeof(u));
    return rv;
}

CK_RV core_logout(session *s)
{
    token *t = s->tok;
    pthread_mutex_lock(&t->lock);
    CK_RV rv = t->login == LOGIN_NONE ? CKR_USER_NOT_LOGGED_IN : CKR_OK;
    if (rv == CKR_OK && s->ev != NULL) {
        /* The record names who logged out. */
        snprintf(s->ev_user, sizeof(s->ev_user), "%s", t->user);
        s->ev->user = s->ev_user;
        s->ev->roles = t->roles;
    }
    if (rv == CKR_OK) {
        login_clear_locked(t);
        /* sec. 5.6 C_Logout: private session objects are destroyed. */
        size_t pos = 0;
        uint64_t key;
        void *val;
        while (hmap_next(&t->sobjs, &pos, &key, &val)) {
            object *o = val;
            if (o->is_private) {
                hmap_del(&t->sobjs, key);
                object_unref(o);
                atomic_fetch_add(&t->gen, 1);
            }
        }
    }
    pthread_mutex_unlock(&t->lock);
    return rv;
}

static CK_RV check_pin_len(size_t pinlen)
{
    ENSURE(pinlen >= lib.cfg.pin_min_len && pinlen <= lib.cfg.pin_max_len, CKR_PIN_LEN_RANGE);
    return CKR_OK;
}

CK_RV core_init_pin(session *s, const uint8_t *pin, size_t pinlen)
{
    CK_RV rv;
    token *t = s->tok;
    uint8_t *mk = secmem_alloc(STORE_MK_LEN);
    store_user u;

    memset(&u, 0, sizeof(u));
    ENSURE(mk != NULL, CKR_HOST_MEMORY);
    pthread_mutex_lock(&t->lock);
    /* sec. 5.6 C_InitPIN: only in a R/W SO session. */
    bool so = t->login == LOGIN_SO;
    if (so)
        memcpy(mk, t->mk, STORE_MK_LEN);
    pthread_mutex_unlock(&t->lock);
    ENSURE_OUT(so, CKR_USER_NOT_LOGGED_IN);
    ENSURE_OUT(session_is_rw(s), CKR_SESSION_READ_ONLY);
    GUARD_OUT(check_pin_len(pinlen));
    /* A fresh sealing resets the failure counts: this is how the admin
     * unlocks the user PIN (and PIN-selected login). */
    GUARD_OUT(login_seal_for(t, USER_NAME_USER, CKU_USER, CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_DECRYPT,
                             pin, pinlen, mk, &u));
    GUARD_OUT(store_user_put(t->st, &u));
    rv = store_user_reset_failures(t->st, COUNTER_USER);
    if (rv == CKR_USER_PIN_NOT_INITIALIZED)
        rv = login_make_counters(t);
out:
    secmem_free(mk, STORE_MK_LEN);
    secmem_wipe(&u, sizeof(u));
    return rv;
}

CK_RV core_set_pin(session *s, const uint8_t *old, size_t oldlen, const uint8_t *pin, size_t pinlen)
{
    CK_RV rv;
    token *t = s->tok;
    uint8_t *mk = NULL;
    store_user u, cur;
    char name[sizeof(t->user)];

    memset(&u, 0, sizeof(u));
    ENSURE(session_is_rw(s), CKR_SESSION_READ_ONLY);
    ENSURE(token_ready(t), CKR_TOKEN_NOT_RECOGNIZED);
    GUARD(check_pin_len(pinlen));
    pthread_mutex_lock(&t->lock);
    /* sec. 5.6 C_SetPIN: the PIN of whoever is logged in; the user's when
     * nobody is. */
    snprintf(name, sizeof(name), "%s", t->login != LOGIN_NONE ? t->user : USER_NAME_USER);
    pthread_mutex_unlock(&t->lock);

    GUARD(store_user_get(t->st, name, &cur));
    mk = secmem_alloc(STORE_MK_LEN);
    ENSURE(mk != NULL, CKR_HOST_MEMORY);
    GUARD_OUT(login_verify_pin(t, name, old, oldlen, mk));
    GUARD_OUT(login_seal_for(t, name, cur.type, cur.roles, pin, pinlen, mk, &u));
    u.flags = cur.flags;
    GUARD_OUT(store_user_put(t->st, &u));
out:
    secmem_free(mk, STORE_MK_LEN);
    secmem_wipe(&u, sizeof(u));
    secmem_wipe(&cur, sizeof(cur));
    return rv;
}

/* ---- roles ----------------------------------------------------------------- */

/* Which roles permit each action (docs/roles.md). An admin has no data
 * role, so it can manage keys but never use them. */
static const unsigned long role_needs[ACT_COUNT] = {
    [ACT_ENCRYPT] = CUSTOS_ROLE_GENERATE,
    [ACT_DECRYPT] = CUSTOS_ROLE_DECRYPT,
    [ACT_SIGN] = CUSTOS_ROLE_GENERATE,
    [ACT_VERIFY] = CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_DECRYPT,
    [ACT_DIGEST_KEY] = CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_DECRYPT,
    [ACT_WRAP] = CUSTOS_ROLE_GENERATE,
    [ACT_UNWRAP] = CUSTOS_ROLE_DECRYPT,
    [ACT_CREATE] = CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_ADMIN,
    [ACT_TOKEN_WRITE] = CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_ADMIN,
};

CK_RV role_check(const token *t, role_action a)
{
    if (t->login == LOGIN_NONE)
        return CKR_OK;
    return (t->roles & role_needs[a]) ? CKR_OK : CKR_ACTION_PROHIBITED;
}

/* Is name one of the comma-separated names in list? */
static bool listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *end = e;
        while (end > p && end[-1] == ' ')
            end--;
        if ((size_t)(end - p) == n && n > 0 && !memcmp(p, name, n))
            return true;
        p = e;
    }
    return false;
}

bool role_sees(const token *t, const object *o)
{
    bool admin = (t->roles & CUSTOS_ROLE_ADMIN) != 0;
    if (o->is_private) {
        /* sec. 4.4: private objects are for the normal user; Custos's
         * admin sees them too (key lifecycle), the audit role never. */
        bool data_user = t->login == LOGIN_USER &&
                         (t->roles & (CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_DECRYPT));
        if (!data_user && !admin)
            return false;
    }
    if (o->acl != NULL && !admin)
        return t->login != LOGIN_NONE && listed(o->acl, t->user);
    return true;
}
