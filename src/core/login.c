/* Login state and PINs (PKCS#11 3.2 sec. 5.6, 5.7): C_Login, C_Logout,
 * C_InitPIN, C_SetPIN. A PIN never is compared: it derives (scrypt or
 * PBKDF2, parameters stored per user) the key that unseals the token's
 * master key, and the AEAD tag check is the constant-time comparison. Login
 * state is per process and shared by all of its sessions. */
#include <string.h>
#include "core/internal.h"
#include "crypto/crypto.h"
#include "util/secmem.h"

#define KEK_LEN 32

CK_RV login_seal_for(const token *t, const char *name, CK_USER_TYPE type,
                     const uint8_t *pin, size_t pinlen, const uint8_t *mk, store_user *u)
{
    CK_RV rv;
    uint8_t kek[KEK_LEN];

    memset(u, 0, sizeof(*u));
    ENSURE(strlen(name) < sizeof(u->name), CKR_ARGUMENTS_BAD);
    strcpy(u->name, name);
    u->type = type;
    u->kdf = lib.cfg.kdf;
    GUARD(crypto_random(u->salt, sizeof(u->salt)));
    GUARD_OUT(crypto_kdf(&u->kdf, pin, pinlen, u->salt, sizeof(u->salt), kek, sizeof(kek)));
    GUARD_OUT(store_seal_mk(t->info.serial, name, kek, mk, u->sealed_mk));
out:
    secmem_wipe(kek, sizeof(kek));
    return rv;
}

CK_RV login_verify_pin(token *t, const char *name, const uint8_t *pin, size_t pinlen, uint8_t *mk)
{
    CK_RV rv;
    store_user u;
    uint8_t kek[KEK_LEN];

    GUARD(store_user_get(t->st, name, &u));
    ENSURE(u.failures < lib.cfg.pin_max_retries, CKR_PIN_LOCKED);
    GUARD_OUT(crypto_kdf(&u.kdf, pin, pinlen, u.salt, sizeof(u.salt), kek, sizeof(kek)));
    rv = store_unseal_mk(t->info.serial, name, kek, u.sealed_mk, mk);
    if (rv == CKR_PIN_INCORRECT) {
        uint32_t fails;
        CK_RV frv = store_user_fail(t->st, name, &fails);
        if (frv != CKR_OK)
            rv = frv;
        goto out;
    }
    GUARD_OUT(rv);
    if (u.failures != 0)
        GUARD_OUT(store_user_reset_failures(t->st, name));
out:
    secmem_wipe(kek, sizeof(kek));
    if (rv != CKR_OK)
        secmem_wipe(mk, STORE_MK_LEN);
    return rv;
}

void login_clear_locked(token *t)
{
    secmem_free(t->mk, STORE_MK_LEN);
    t->mk = NULL;
    if (t->login != LOGIN_NONE)
        t->login_epoch++;
    t->login = LOGIN_NONE;
    object_cache_flush_locked(t);
}

static bool ro_session_exists(const token *t) { return t->sessions > t->rw_sessions; }

CK_RV core_login(session *s, CK_USER_TYPE type, const uint8_t *pin, size_t pinlen)
{
    CK_RV rv;
    token *t = s->tok;
    uint8_t *mk = NULL;
    login_state want;

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
    if (t->login != LOGIN_NONE)
        rv = t->login == want ? CKR_USER_ALREADY_LOGGED_IN : CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
    else if (want == LOGIN_SO && ro_session_exists(t))
        rv = CKR_SESSION_READ_ONLY_EXISTS;
    else
        rv = CKR_OK;
    pthread_mutex_unlock(&t->lock);
    GUARD(rv);

    mk = secmem_alloc(STORE_MK_LEN);
    ENSURE(mk != NULL, CKR_HOST_MEMORY);
    /* The KDF runs without the token lock: other sessions keep working. */
    GUARD_OUT(login_verify_pin(t, want == LOGIN_SO ? USER_NAME_SO : USER_NAME_USER, pin, pinlen, mk));

    pthread_mutex_lock(&t->lock);
    /* Another thread may have logged in meanwhile. */
    if (t->login != LOGIN_NONE) {
        rv = t->login == want ? CKR_USER_ALREADY_LOGGED_IN : CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
    } else if (want == LOGIN_SO && ro_session_exists(t)) {
        rv = CKR_SESSION_READ_ONLY_EXISTS;
    } else {
        t->mk = mk;
        mk = NULL;
        t->login = want;
    }
    pthread_mutex_unlock(&t->lock);
out:
    secmem_free(mk, STORE_MK_LEN);
    return rv;
}

CK_RV core_logout(session *s)
{
    token *t = s->tok;
    pthread_mutex_lock(&t->lock);
    CK_RV rv = t->login == LOGIN_NONE ? CKR_USER_NOT_LOGGED_IN : CKR_OK;
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
    /* A fresh sealing resets the failure count: this is how the SO
     * unlocks a locked user PIN. */
    GUARD_OUT(login_seal_for(t, USER_NAME_USER, CKU_USER, pin, pinlen, mk, &u));
    GUARD_OUT(store_user_put(t->st, &u));
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
    store_user u;

    memset(&u, 0, sizeof(u));
    ENSURE(session_is_rw(s), CKR_SESSION_READ_ONLY);
    ENSURE(token_ready(t), CKR_TOKEN_NOT_RECOGNIZED);
    GUARD(check_pin_len(pinlen));
    pthread_mutex_lock(&t->lock);
    /* sec. 5.6 C_SetPIN: the PIN of whoever is logged in; the user's when
     * nobody is. */
    bool so = t->login == LOGIN_SO;
    pthread_mutex_unlock(&t->lock);
    const char *name = so ? USER_NAME_SO : USER_NAME_USER;

    mk = secmem_alloc(STORE_MK_LEN);
    ENSURE(mk != NULL, CKR_HOST_MEMORY);
    GUARD_OUT(login_verify_pin(t, name, old, oldlen, mk));
    GUARD_OUT(login_seal_for(t, name, so ? CKU_SO : CKU_USER, pin, pinlen, mk, &u));
    GUARD_OUT(store_user_put(t->st, &u));
out:
    secmem_free(mk, STORE_MK_LEN);
    secmem_wipe(&u, sizeof(u));
    return rv;
}
