/* Key management (PKCS#11 3.2 sec. 5.14): C_GenerateKey, C_WrapKey,
 * C_UnwrapKey, and C_GenerateRandom. Key values are made and unwrapped into
 * secure memory and leave the token only wrapped, by the rules of
 * CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED and the wrapping key's
 * CKA_WRAP_TEMPLATE. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "core/internal.h"
#include "crypto/crypto.h"
#include "util/buf.h"
#include "util/secmem.h"

CK_RV core_random(CK_BYTE_PTR out, CK_ULONG len)
{
    return len == 0 ? CKR_OK : crypto_random(out, len);
}

CK_RV core_generate_key(session *s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                        CK_OBJECT_HANDLE_PTR out)
{
    CK_RV rv;
    attr_list l;
    uint8_t *v = NULL;
    CK_ULONG len = 0;

    attr_list_init(&l);
    if (s->ev != NULL)
        s->ev->mech = m->mechanism;
    const mech_desc *d = mech_find(m->mechanism);
    ENSURE(d != NULL && (d->flags & MECH_KEYGEN), CKR_MECHANISM_INVALID);
    GUARD(role_check(s->tok, ACT_CREATE));
    /* Key generation mechanisms of this kind take no parameter. */
    ENSURE(m->pParameter == NULL && m->ulParameterLen == 0, CKR_MECHANISM_PARAM_INVALID);
    GUARD_OUT(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, d->gen_key_type, d->type, t, n, &l));
    ENSURE_OUT(attr_get_ulong(&l, CKA_VALUE_LEN, &len), CKR_TEMPLATE_INCOMPLETE);
    ENSURE_OUT(len > 0 && len <= KEY_MAX_BYTES && mech_key_size_ok(d, len), CKR_KEY_SIZE_RANGE);
    v = secmem_alloc(len);
    ENSURE_OUT(v != NULL, CKR_HOST_MEMORY);
    GUARD_OUT(crypto_random(v, len));
    GUARD_OUT(schema_set_value(&l, v, len));
    if (attr_find(&l, CKA_CUSTOS_FAMILY) != NULL) {
        /* Version 1 of a key family (docs/key-families.md). */
        CK_ATTRIBUTE unless;
        char id[160];
        GUARD_OUT(family_prepare_new(s, t, n, &l, &unless, id, sizeof(id)));
        GUARD_OUT(object_add_guarded(s, &l, &unless, 0, NULL, 0, out));
    } else {
        GUARD_OUT(object_add(s, &l, out));
    }
out:
    secmem_free(v, len);
    attr_list_free(&l);
    return rv;
}

/* The wrapping key's side of C_WrapKey: usable for wrapping, trusted if
 * the key demands it, its CKA_WRAP_TEMPLATE satisfied by the key. */
struct wrap_check {
    bool trusted;
    attr wrap_template;  /* copy of the wrapping key's CKA_WRAP_TEMPLATE */
};

static CK_RV wrapping_info_locked(attr_list *l, void *arg)
{
    struct wrap_check *w = arg;
    w->trusted = attr_bool(l, CKA_TRUSTED, false);
    const attr *a = attr_find(l, CKA_WRAP_TEMPLATE);
    if (a != NULL && a->len > 0) {
        w->wrap_template.type = a->type;
        w->wrap_template.flags = 0;
        w->wrap_template.value = malloc(a->len);
        ENSURE(w->wrap_template.value != NULL, CKR_HOST_MEMORY);
        memcpy(w->wrap_template.value, a->value, a->len);
        w->wrap_template.len = a->len;
    }
    return CKR_OK;
}

static CK_RV wrappable_locked(attr_list *l, void *arg)
{
    const struct wrap_check *w = arg;
    CK_ULONG cls;
    ENSURE(attr_get_ulong(l, CKA_CLASS, &cls) && cls == CKO_SECRET_KEY, CKR_KEY_NOT_WRAPPABLE);
    /* sec. 5.14 C_WrapKey: CKA_EXTRACTABLE false -> CKR_KEY_UNEXTRACTABLE;
     * CKA_WRAP_WITH_TRUSTED needs a CKA_TRUSTED wrapping key. */
    ENSURE(attr_bool(l, CKA_EXTRACTABLE, false), CKR_KEY_UNEXTRACTABLE);
    if (attr_bool(l, CKA_WRAP_WITH_TRUSTED, false))
        ENSURE(w->trusted, CKR_KEY_NOT_WRAPPABLE);
    if (w->wrap_template.value != NULL)
        ENSURE(schema_array_satisfied(&w->wrap_template, l), CKR_KEY_NOT_WRAPPABLE);
    return CKR_OK;
}

static CK_RV wrapping_key(session *s, CK_OBJECT_HANDLE h, const mech_desc *d, mech_op kind,
                          mech_key *k, uint8_t *kb, object **obj)
{
    bool wrap = kind == MECH_OP_WRAP;
    aud_key ak;
    memset(&ak, 0, sizeof(ak));
    CK_RV rv = op_key(s, h, d, wrap ? CKA_WRAP : CKA_UNWRAP,
                      wrap ? CKR_WRAPPING_KEY_HANDLE_INVALID : CKR_UNWRAPPING_KEY_HANDLE_INVALID,
                      k, kb, &ak);
    audit_use_key(s, &ak);
    /* The wrapping-key variants of the standard's codes (sec. 5.14). */
    if (rv == CKR_KEY_TYPE_INCONSISTENT)
        rv = wrap ? CKR_WRAPPING_KEY_TYPE_INCONSISTENT : CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT;
    else if (rv == CKR_KEY_SIZE_RANGE)
        rv = wrap ? CKR_WRAPPING_KEY_SIZE_RANGE : CKR_UNWRAPPING_KEY_SIZE_RANGE;
    GUARD(rv);
    /* The same lookup op_key just made (hot: no store round trip within
     * HOT_RECHECK_MS of the last check), so the attributes read next and
     * the value used belong to one view of the key. */
    return object_get_mode(s, h, true, obj);
}

CK_RV core_wrappable_value(session *s, object *wo, CK_OBJECT_HANDLE key, uint8_t *kv, size_t cap,
                           size_t *kvlen, object **kobj)
{
    struct wrap_check w;
    object *ko = NULL;
    CK_RV rv;

    memset(&w, 0, sizeof(w));
    *kobj = NULL;
    GUARD_OUT(object_with_attrs(s->tok, wo, wrapping_info_locked, &w));
    /* The key to be wrapped is read fresh from the store, so that an
     * extractable flag cleared by another process is honoured at once. */
    rv = object_get(s, key, &ko);
    ENSURE_OUT(rv != CKR_OBJECT_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID);
    GUARD_OUT(rv);
    audit_note_resource(s, s->tok, ko);
    GUARD_OUT(object_with_attrs(s->tok, ko, wrappable_locked, &w));
    GUARD_OUT(object_key_copy(s->tok, ko, kv, cap, kvlen));
    *kobj = ko;
    ko = NULL;
out:
    free(w.wrap_template.value);
    object_unref(ko);
    return rv;
}

CK_RV core_wrap_key(session *s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
                    CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    CK_RV rv;
    const mech_desc *d;
    uint8_t kek[KEY_MAX_BYTES], kv[KEY_MAX_BYTES];
    size_t keklen = 0, kvlen = 0, n = 0;
    object *wo = NULL, *ko = NULL;
    bool write;

    if (s->ev != NULL)
        s->ev->mech = m->mechanism;
    GUARD(op_mech(m, MECH_OP_WRAP, &d));
    GUARD(op_role(s->tok, MECH_OP_WRAP));
    mech_key k = { kek, 0, CK_UNAVAILABLE_INFORMATION };
    rv = wrapping_key(s, wrapping, d, MECH_OP_WRAP, &k, kek, &wo);
    keklen = k.len;
    GUARD_OUT(rv);
    GUARD_OUT(core_wrappable_value(s, wo, key, kv, sizeof(kv), &kvlen, &ko));
    size_t need = d->ops->wrapped_len(d, m, kvlen);
    ENSURE_OUT(need > 0, CKR_KEY_SIZE_RANGE);
    switch (out_prepare(need, out, outlen)) {
    case OUT_SIZE_ONLY: write = false; rv = CKR_OK; s->size_query = true; break;
    case OUT_TOO_SMALL: write = false; rv = CKR_BUFFER_TOO_SMALL; break;
    default: write = true;
    }
    if (!write)
        goto out;
    GUARD_OUT(d->ops->wrap(d, m, &k, kv, kvlen, out, &n));
    *outlen = (CK_ULONG)n;
out:
    secmem_wipe(kek, keklen);
    secmem_wipe(kv, kvlen);
    object_unref(wo);
    object_unref(ko);
    return rv;
}

static CK_RV unwrap_template_locked(attr_list *l, void *arg)
{
    attr *copy = arg;
    const attr *a = attr_find(l, CKA_UNWRAP_TEMPLATE);
    if (a == NULL || a->len == 0)
        return CKR_OK;
    copy->value = malloc(a->len);
    ENSURE(copy->value != NULL, CKR_HOST_MEMORY);
    memcpy(copy->value, a->value, a->len);
    copy->len = a->len;
    copy->type = a->type;
    return CKR_OK;
}

/* The unwrap of C_UnwrapKey (a wrap mechanism) and of
 * C_UnwrapKeyAuthenticated (an AEAD decryption, aead = true). */
static CK_RV unwrap_common(session *s, CK_MECHANISM_PTR m, const mech_desc *d, bool aead,
                           CK_OBJECT_HANDLE unwrapping, CK_BYTE_PTR wrapped, CK_ULONG wrappedlen,
                           CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    CK_RV rv;
    uint8_t kek[KEY_MAX_BYTES];
    size_t keklen = 0, vlen = 0;
    uint8_t *v = NULL;
    size_t vcap = wrappedlen;
    object *uo = NULL;
    attr ut;
    CK_ATTRIBUTE *merged = NULL;
    CK_ULONG mn = 0;
    attr_list l;
    mech_ctx *ctx = NULL;

    memset(&ut, 0, sizeof(ut));
    attr_list_init(&l);
    GUARD(op_role(s->tok, MECH_OP_UNWRAP));
    mech_key k = { kek, 0, CK_UNAVAILABLE_INFORMATION };
    rv = wrapping_key(s, unwrapping, d, MECH_OP_UNWRAP, &k, kek, &uo);
    keklen = k.len;
    GUARD_OUT(rv);
    GUARD_OUT(object_with_attrs(s->tok, uo, unwrap_template_locked, &ut));
    if (ut.value != NULL) {
        GUARD_OUT(schema_merge_unwrap_template(&ut, t, n, &merged, &mn));
    }
    GUARD_OUT(schema_build(TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION,
                           CK_UNAVAILABLE_INFORMATION, merged ? merged : t, merged ? mn : n, &l));
    const attr *lab = attr_find(&l, CKA_LABEL);
    if (lab != NULL && s->ev != NULL)
        snprintf(s->ev->resource_label, sizeof(s->ev->resource_label), "%.*s", (int)lab->len,
                 (const char *)lab->value);
    v = secmem_alloc(vcap ? vcap : 1);
    ENSURE_OUT(v != NULL, CKR_HOST_MEMORY);
    if (aead) {
        /* A wrong tag, AAD or IV: the wrapped key is not this context's. */
        GUARD_OUT(d->ops->init(d, m, MECH_OP_DECRYPT, &k, &ctx));
        rv = d->ops->oneshot(ctx, wrapped, wrappedlen, v, &vlen);
        if (rv == CKR_ENCRYPTED_DATA_INVALID)
            rv = CKR_WRAPPED_KEY_INVALID;
        else if (rv == CKR_ENCRYPTED_DATA_LEN_RANGE)
            rv = CKR_WRAPPED_KEY_LEN_RANGE;
        GUARD_OUT(rv);
    } else {
        GUARD_OUT(d->ops->unwrap(d, m, &k, wrapped, wrappedlen, v, &vlen));
    }
    rv = schema_set_value(&l, v, vlen);
    /* The data unwrapped to a value this key type cannot have. */
    ENSURE_OUT(rv != CKR_KEY_SIZE_RANGE, CKR_WRAPPED_KEY_INVALID);
    GUARD_OUT(rv);
    GUARD_OUT(object_add(s, &l, out));
out:
    if (ctx != NULL)
        d->ops->free(ctx);
    secmem_wipe(kek, keklen);
    secmem_free(v, vcap ? vcap : 1);
    free(ut.value);
    free(merged);
    attr_list_free(&l);
    object_unref(uo);
    return rv;
}

CK_RV core_unwrap_key(session *s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE unwrapping,
                      CK_BYTE_PTR wrapped, CK_ULONG wrappedlen, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                      CK_OBJECT_HANDLE_PTR out)
{
    const mech_desc *d;
    if (s->ev != NULL)
        s->ev->mech = m->mechanism;
    GUARD(op_mech(m, MECH_OP_UNWRAP, &d));
    return unwrap_common(s, m, d, false, unwrapping, wrapped, wrappedlen, t, n, out);
}

CK_RV core_unwrap_with(session *s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE unwrapping,
                       const uint8_t *wrapped, size_t wrappedlen, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                       CK_OBJECT_HANDLE_PTR out)
{
    const mech_desc *d = mech_find(m->mechanism);
    ENSURE(d != NULL && d->ops->init != NULL && d->ops->oneshot != NULL, CKR_MECHANISM_INVALID);
    if (d->ops->check_param != NULL)
        GUARD(d->ops->check_param(d, m, MECH_OP_DECRYPT));
    return unwrap_common(s, m, d, true, unwrapping, (CK_BYTE_PTR)wrapped, wrappedlen, t, n, out);
}
