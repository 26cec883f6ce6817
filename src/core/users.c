/* User management for admins, behind the "Vendor Custos" interface
 * (pkcs11/custos.h, docs/roles.md): add, remove, change roles, reset a PIN,
 * enable or disable, list. Every change needs an admin logged in on an R/W
 * session; adding a user or resetting a PIN seals the master key, which the
 * admin's login holds, under the new PIN. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/internal.h"
#include "util/secmem.h"

#define ROLES_ALL (CUSTOS_ROLE_ADMIN | CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_DECRYPT | CUSTOS_ROLE_AUDIT)

static bool roles_ok(CK_ULONG roles)
{
    if (roles == 0 || (roles & ~ROLES_ALL))
        return false;
    /* An admin manages keys and never uses them: no other role with it. */
    return !(roles & CUSTOS_ROLE_ADMIN) || roles == CUSTOS_ROLE_ADMIN;
}

/* A name from the caller: 1..63 bytes of UTF-8, no NUL, no ',' (lists of
 * allowed users are comma separated), not starting with '*' (reserved). */
static CK_RV name_in(char out[64], const CK_UTF8CHAR *p, CK_ULONG n)
{
    ENSURE(p != NULL && n > 0 && n < 64, CKR_ARGUMENTS_BAD);
    ENSURE(memchr(p, '\0', n) == NULL && memchr(p, ',', n) == NULL && p[0] != '*', CKR_ARGUMENTS_BAD);
    memcpy(out, p, n);
    out[n] = '\0';
    return CKR_OK;
}

/* The admin's master key, copied for the duration of a call. */
static CK_RV admin_mk(session *s, bool rw, uint8_t *mk, char self[64])
{
    token *t = s->tok;
    /* An R/O session can never hold an admin (sec. 5.6): say why first. */
    if (rw)
        ENSURE(session_is_rw(s), CKR_SESSION_READ_ONLY);
    pthread_mutex_lock(&t->lock);
    bool admin = t->login == LOGIN_SO && (t->roles & CUSTOS_ROLE_ADMIN) && t->mk != NULL;
    if (admin) {
        if (mk != NULL)
            memcpy(mk, t->mk, STORE_MK_LEN);
        snprintf(self, 64, "%s", t->user);
    }
    pthread_mutex_unlock(&t->lock);
    ENSURE(admin, CKR_USER_NOT_LOGGED_IN);
    return CKR_OK;
}

static CK_RV check_pin_len(size_t pinlen)
{
    ENSURE(pinlen >= lib.cfg.pin_min_len && pinlen <= lib.cfg.pin_max_len, CKR_PIN_LEN_RANGE);
    return CKR_OK;
}

static CK_USER_TYPE type_of(CK_ULONG roles) { return (roles & CUSTOS_ROLE_ADMIN) ? CKU_SO : CKU_USER; }

CK_RV core_user_add(session *s, const CK_UTF8CHAR *name, CK_ULONG namelen, CK_ULONG roles,
                    const CK_UTF8CHAR *pin, CK_ULONG pinlen)
{
    CK_RV rv;
    char n[64], self[64];
    store_user u, old;
    uint8_t *mk = secmem_alloc(STORE_MK_LEN);

    memset(&u, 0, sizeof(u));
    ENSURE(mk != NULL, CKR_HOST_MEMORY);
    GUARD_OUT(admin_mk(s, true, mk, self));
    GUARD_OUT(name_in(n, name, namelen));
    audit_note_target(s, n);
    ENSURE_OUT(roles_ok(roles), CKR_ARGUMENTS_BAD);
    ENSURE_OUT(pin != NULL, CKR_ARGUMENTS_BAD);
    GUARD_OUT(check_pin_len(pinlen));
    rv = store_user_get(s->tok->st, n, &old);
    ENSURE_OUT(rv == CKR_USER_PIN_NOT_INITIALIZED, rv == CKR_OK ? CKR_ACTION_PROHIBITED : rv);
    GUARD_OUT(login_seal_for(s->tok, n, type_of(roles), roles, pin, pinlen, mk, &u));
    GUARD_OUT(store_user_put(s->tok->st, &u));
out:
    secmem_free(mk, STORE_MK_LEN);
    secmem_wipe(&u, sizeof(u));
    return rv;
}

/* Look a user up for a change by an admin; self is refused when asked. */
static CK_RV target(session *s, const CK_UTF8CHAR *name, CK_ULONG namelen, bool not_self,
                    store_user *u, char n[64])
{
    char self[64];
    GUARD(admin_mk(s, true, NULL, self));
    GUARD(name_in(n, name, namelen));
    audit_note_target(s, n);
    CK_RV rv = store_user_get(s->tok->st, n, u);
    ENSURE(rv != CKR_USER_PIN_NOT_INITIALIZED, CKR_ARGUMENTS_BAD);
    GUARD(rv);
    if (not_self)
        ENSURE(strcmp(n, self) != 0, CKR_ACTION_PROHIBITED);
    return CKR_OK;
}

CK_RV core_user_remove(session *s, const CK_UTF8CHAR *name, CK_ULONG namelen)
{
    store_user u;
    char n[64];
    GUARD(target(s, name, namelen, true, &u, n));
    secmem_wipe(&u, sizeof(u));
    return store_user_delete(s->tok->st, n);
}

CK_RV core_user_set_roles(session *s, const CK_UTF8CHAR *name, CK_ULONG namelen, CK_ULONG roles)
{
    store_user u;
    char n[64];
    GUARD(target(s, name, namelen, false, &u, n));
    ENSURE(roles_ok(roles), CKR_ARGUMENTS_BAD);
    /* The lookup tag binds the user type: crossing it needs the PIN. */
    ENSURE(type_of(roles) == u.type, CKR_ACTION_PROHIBITED);
    u.roles = (uint32_t)roles;
    CK_RV rv = store_user_put(s->tok->st, &u);
    secmem_wipe(&u, sizeof(u));
    return rv;
}

CK_RV core_user_set_pin(session *s, const CK_UTF8CHAR *name, CK_ULONG namelen, const CK_UTF8CHAR *pin,
                        CK_ULONG pinlen)
{
    CK_RV rv;
    char n[64], self[64];
    store_user u, nu;
    uint8_t *mk = secmem_alloc(STORE_MK_LEN);

    memset(&nu, 0, sizeof(nu));
    memset(&u, 0, sizeof(u));
    ENSURE(mk != NULL, CKR_HOST_MEMORY);
    GUARD_OUT(admin_mk(s, true, mk, self));
    GUARD_OUT(target(s, name, namelen, false, &u, n));
    ENSURE_OUT(pin != NULL, CKR_ARGUMENTS_BAD);
    GUARD_OUT(check_pin_len(pinlen));
    /* A fresh sealing with failures 0: this also lifts a lockout. */
    GUARD_OUT(login_seal_for(s->tok, n, u.type, u.roles, pin, pinlen, mk, &nu));
    nu.flags = u.flags;
    GUARD_OUT(store_user_put(s->tok->st, &nu));
out:
    secmem_free(mk, STORE_MK_LEN);
    secmem_wipe(&u, sizeof(u));
    secmem_wipe(&nu, sizeof(nu));
    return rv;
}

CK_RV core_user_enable(session *s, const CK_UTF8CHAR *name, CK_ULONG namelen, bool enabled)
{
    store_user u;
    char n[64];
    GUARD(target(s, name, namelen, true, &u, n));
    if (enabled)
        u.flags &= ~STORE_USER_DISABLED;
    else
        u.flags |= STORE_USER_DISABLED;
    CK_RV rv = store_user_put(s->tok->st, &u);
    secmem_wipe(&u, sizeof(u));
    return rv;
}

CK_RV core_user_list(session *s, CK_CUSTOS_USER_INFO_PTR list, CK_ULONG_PTR count)
{
    char self[64];
    char **names = NULL;
    size_t n = 0;
    CK_ULONG k = 0;
    CK_RV rv;

    GUARD(admin_mk(s, false, NULL, self));
    GUARD(store_user_names(s->tok->st, &names, &n));
    rv = CKR_OK;
    for (size_t i = 0; i < n; i++) {
        store_user u;
        if (names[i][0] == '*')
            continue; /* the anonymous counters are not users */
        if (list != NULL && k < *count) {
            GUARD_OUT(store_user_get(s->tok->st, names[i], &u));
            CK_CUSTOS_USER_INFO *e = &list[k];
            memset(e, 0, sizeof(*e));
            snprintf((char *)e->name, sizeof(e->name), "%s", u.name);
            e->roles = u.roles;
            e->failures = u.failures;
            e->flags = ((u.flags & STORE_USER_DISABLED) ? CKF_CUSTOS_USER_DISABLED : 0) |
                       (u.failures >= lib.cfg.pin_max_retries ? CKF_CUSTOS_USER_LOCKED : 0);
            secmem_wipe(&u, sizeof(u));
        }
        k++;
    }
    if (list != NULL && k > *count)
        rv = CKR_BUFFER_TOO_SMALL;
    *count = k;
out:
    store_user_names_free(names, n);
    return rv;
}

/* ---- key-family rotation on demand (docs/key-families.md) ----------------- */

CK_RV core_key_rotate(session *s, const CK_UTF8CHAR *family, CK_ULONG len, CK_ULONG_PTR version)
{
    char self[64], name[64];
    GUARD(admin_mk(s, true, NULL, self));
    ENSURE(family != NULL && len > 0 && len < sizeof(name) && memchr(family, '\0', len) == NULL,
           CKR_ARGUMENTS_BAD);
    memcpy(name, family, len);
    name[len] = '\0';
    audit_note_target(s, name);
    return family_rotate(s, name, version != NULL ? *version : 0, version);
}

CK_RV core_key_rotate_due(session *s, CK_ULONG_PTR rotated)
{
    char self[64];
    GUARD(admin_mk(s, true, NULL, self));
    return family_rotate_due(s, rotated);
}
