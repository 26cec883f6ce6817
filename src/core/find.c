/* C_FindObjectsInit / C_FindObjects / C_FindObjectsFinal (PKCS#11 3.2 sec.
 * 5.7). Token objects are found by the store's index, never by reading every
 * object; session objects by a scan of this process's few session objects.
 * Results are fixed at init time. */
#include <stdlib.h>
#include <string.h>
#include "core/internal.h"

static const CK_BBOOL ck_false = CK_FALSE;

/* May a template attribute be matched by the index? Secret values are
 * sealed in the store, so CKA_VALUE is matched afterwards, in memory. */
static bool indexable(CK_ATTRIBUTE_TYPE type) { return type != CKA_VALUE; }

static CK_RV push(find_state *f, size_t *cap, CK_OBJECT_HANDLE h)
{
    if (f->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        CK_OBJECT_HANDLE *nh = realloc(f->handles, ncap * sizeof(*nh));
        ENSURE(nh != NULL, CKR_HOST_MEMORY);
        f->handles = nh;
        *cap = ncap;
    }
    f->handles[f->n++] = h;
    return CKR_OK;
}

struct match_args {
    CK_ATTRIBUTE_PTR t;
    CK_ULONG n;
};

static CK_RV match_locked(attr_list *l, void *arg)
{
    struct match_args *m = arg;
    return attr_match(l, m->t, m->n) ? CKR_OK : CKR_FUNCTION_FAILED;
}

/* The attributes read beside each hit of the index, in the same statement:
 * what role_sees needs (docs/roles.md), without loading objects. */
static const CK_ATTRIBUTE_TYPE SIDE[] = { CKA_PRIVATE, CKA_CUSTOS_ALLOWED_USERS };
enum { SIDE_PRIVATE, SIDE_ACL };
_Static_assert(ARRAY_LEN(SIDE) <= STORE_FIND_SIDE, "side values fit the store's");

/* May the current identity see a token object found by the index? The
 * index answered the template; privacy and CKA_CUSTOS_ALLOWED_USERS came
 * with the hit. *ok false: decide by loading the object. */
static void found_visible(const token *tok, const store_found *f, const store_hit *h,
                          bool *is_private, bool *ok)
{
    size_t plen = h->len[SIDE_PRIVATE], alen = h->len[SIDE_ACL];
    char acl[512];

    *is_private = plen == sizeof(CK_BBOOL) && f->arena[h->off[SIDE_PRIVATE]] == CK_TRUE;
    *ok = true;
    if (tok->roles & CUSTOS_ROLE_ADMIN)
        return;
    if (alen == STORE_SIDE_ABSENT || alen == 0)
        return;
    if (alen >= sizeof(acl)) {
        /* A list this long is not worth a special path: load the object. */
        *ok = false;
        return;
    }
    memcpy(acl, f->arena + h->off[SIDE_ACL], alen);
    acl[alen] = '\0';
    object probe = { .is_private = *is_private, .acl = acl };
    *ok = role_sees(tok, &probe);
}

static CK_RV find_token_objects(session *s, CK_ATTRIBUTE_PTR t, CK_ULONG n, size_t *cap)
{
    token *tok = s->tok;
    CK_RV rv;
    CK_ATTRIBUTE *q = calloc(n + 1, sizeof(*q));
    store_found f = { 0 };
    size_t qn = 0;
    bool post = false;

    ENSURE(q != NULL, CKR_HOST_MEMORY);
    for (CK_ULONG i = 0; i < n; i++) {
        if (indexable(t[i].type))
            q[qn++] = t[i];
        else
            post = true;
    }
    /* Who may see private objects at all (docs/roles.md). */
    object private_probe = { .is_private = true };
    bool priv_visible = role_sees(tok, &private_probe);
    if (!priv_visible) {
        q[qn].type = CKA_PRIVATE;
        q[qn].pValue = (CK_VOID_PTR)&ck_false;
        q[qn].ulValueLen = sizeof(ck_false);
        qn++;
    }
    /* An administrator sees every ACL: only privacy is needed then. */
    size_t nside = (tok->roles & CUSTOS_ROLE_ADMIN) ? 1 : ARRAY_LEN(SIDE);
    GUARD_OUT(store_find_with(tok->st, q, qn, SIDE, nside, &f));
    for (size_t i = 0; i < f.count; i++) {
        bool is_private, ok;
        found_visible(tok, &f, &f.hits[i], &is_private, &ok);
        CK_OBJECT_HANDLE h = object_client_handle(tok, f.hits[i].handle, is_private);
        if (post || !ok) {
            /* object_get applies every visibility rule itself. */
            object *o;
            if (object_get(s, h, &o) != CKR_OK)
                continue;
            struct match_args m = { t, n };
            CK_RV mrv = post ? object_with_attrs(tok, o, match_locked, &m) : CKR_OK;
            object_unref(o);
            if (mrv != CKR_OK)
                continue;
        }
        GUARD_OUT(push(&s->find, cap, h));
    }
out:
    free(q);
    store_found_free(&f);
    return rv;
}

CK_RV core_find_init(session *s, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    token *tok = s->tok;
    size_t cap = 0;
    CK_RV rv = CKR_OK;

    ENSURE(!s->find.active, CKR_OPERATION_ACTIVE);
    for (CK_ULONG i = 0; i < n; i++)
        ENSURE(t[i].pValue != NULL || t[i].ulValueLen == 0, CKR_ATTRIBUTE_VALUE_INVALID);
    memset(&s->find, 0, sizeof(s->find));

    /* Session objects first, then token objects, each in handle order. */
    pthread_mutex_lock(&tok->lock);
    size_t pos = 0;
    uint64_t key;
    void *val;
    while (rv == CKR_OK && hmap_next(&tok->sobjs, &pos, &key, &val)) {
        object *o = val;
        if (role_sees(tok, o) && attr_match(&o->attrs, t, n))
            rv = push(&s->find, &cap, o->handle);
    }
    pthread_mutex_unlock(&tok->lock);
    if (rv == CKR_OK && token_ready(tok))
        rv = find_token_objects(s, t, n, &cap);
    if (rv != CKR_OK) {
        free(s->find.handles);
        memset(&s->find, 0, sizeof(s->find));
        return rv;
    }
    s->find.active = true;
    return CKR_OK;
}

CK_RV core_find(session *s, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count)
{
    ENSURE(s->find.active, CKR_OPERATION_NOT_INITIALIZED);
    CK_ULONG k = 0;
    while (k < max && s->find.pos < s->find.n)
        out[k++] = s->find.handles[s->find.pos++];
    *count = k;
    return CKR_OK;
}

CK_RV core_find_final(session *s)
{
    ENSURE(s->find.active, CKR_OPERATION_NOT_INITIALIZED);
    free(s->find.handles);
    memset(&s->find, 0, sizeof(s->find));
    return CKR_OK;
}
