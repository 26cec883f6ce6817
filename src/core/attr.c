/* Attribute lists in memory: insert, find, copy, free (key bytes in secure
 * memory), the flat encoding of attribute arrays (CKA_WRAP_TEMPLATE and
 * friends, PKCS#11 3.2 sec. 4.10) and template matching for C_FindObjects. */
#include <stdlib.h>
#include <string.h>

#include "core/schema_internal.h"
#include "util/secmem.h"

/* Encoded array entry header: type, then length, 8 bytes little-endian each. */
#define HDR_LEN 16u

void attr_list_init(attr_list *l)
{
    l->v = NULL;
    l->n = 0;
    l->cap = 0;
}

static void value_free(attr *a)
{
    if (a->flags & ATTR_SECRET)
        secmem_free(a->value, a->len);
    else
        free(a->value);
    a->value = NULL;
    a->len = 0;
}

void attr_list_free(attr_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        value_free(&l->v[i]);
    free(l->v);
    attr_list_init(l);
}

attr *attr_find(const attr_list *l, CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].type == type)
            return &l->v[i];
    return NULL;
}

static CK_RV value_dup(const void *value, size_t len, unsigned flags, uint8_t **out)
{
    *out = NULL;
    if (len == 0)
        return CKR_OK;
    *out = (flags & ATTR_SECRET) ? secmem_dup(value, len) : malloc(len);
    ENSURE(*out != NULL, CKR_HOST_MEMORY);
    if (!(flags & ATTR_SECRET))
        memcpy(*out, value, len);
    return CKR_OK;
}

/* Put type's copied value in a (the existing entry) or, with a NULL, in a
 * new entry at the end. */
static CK_RV put(attr_list *l, attr *a, CK_ATTRIBUTE_TYPE type, const void *value, size_t len,
                 unsigned flags)
{
    uint8_t *copy;
    ENSURE(len == 0 || value != NULL, CKR_ARGUMENTS_BAD);
    GUARD(value_dup(value, len, flags, &copy));
    if (a == NULL) {
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 16;
            attr *v = realloc(l->v, cap * sizeof(*v));
            if (v == NULL) {
                attr tmp = { type, len, copy, flags };
                value_free(&tmp);
                return CKR_HOST_MEMORY;
            }
            l->v = v;
            l->cap = cap;
        }
        a = &l->v[l->n++];
    } else {
        value_free(a);
    }
    a->type = type;
    a->len = len;
    a->value = copy;
    a->flags = flags;
    return CKR_OK;
}

CK_RV attr_set(attr_list *l, CK_ATTRIBUTE_TYPE type, const void *value, size_t len,
               unsigned flags)
{
    return put(l, attr_find(l, type), type, value, len, flags);
}

CK_RV attr_add_new(attr_list *l, CK_ATTRIBUTE_TYPE type, const void *value, size_t len,
                   unsigned flags)
{
    return put(l, NULL, type, value, len, flags);
}

CK_RV attr_set_bool(attr_list *l, CK_ATTRIBUTE_TYPE type, bool v)
{
    CK_BBOOL b = v ? CK_TRUE : CK_FALSE;
    return attr_set(l, type, &b, sizeof(b), 0);
}

CK_RV attr_set_ulong(attr_list *l, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
    return attr_set(l, type, &v, sizeof(v), 0);
}

void attr_remove(attr_list *l, CK_ATTRIBUTE_TYPE type)
{
    attr *a = attr_find(l, type);
    if (a == NULL)
        return;
    value_free(a);
    size_t i = (size_t)(a - l->v);
    memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(attr));
    l->n--;
}

CK_RV attr_list_copy(attr_list *dst, const attr_list *src)
{
    CK_RV rv = CKR_OK;
    attr_list tmp;
    attr_list_init(&tmp);
    for (size_t i = 0; i < src->n; i++) {
        const attr *a = &src->v[i];
        GUARD_OUT(attr_set(&tmp, a->type, a->value, a->len, a->flags));
    }
    *dst = tmp;
    attr_list_init(&tmp);
out:
    attr_list_free(&tmp);
    return rv;
}

bool attr_get_bool(const attr_list *l, CK_ATTRIBUTE_TYPE type, bool *v)
{
    const attr *a = attr_find(l, type);
    if (a == NULL || a->len != sizeof(CK_BBOOL) || (a->flags & ATTR_SEALED))
        return false;
    *v = a->value[0] != CK_FALSE;
    return true;
}

bool attr_get_ulong(const attr_list *l, CK_ATTRIBUTE_TYPE type, CK_ULONG *v)
{
    const attr *a = attr_find(l, type);
    if (a == NULL || a->len != sizeof(CK_ULONG) || (a->flags & ATTR_SEALED))
        return false;
    memcpy(v, a->value, sizeof(*v));
    return true;
}

bool attr_bool(const attr_list *l, CK_ATTRIBUTE_TYPE type, bool dflt)
{
    bool v;
    return attr_get_bool(l, type, &v) ? v : dflt;
}

/* ---- attribute arrays --------------------------------------------------- */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* An attribute inside an array: no nested arrays (sec. 4.10 gives none, and
 * a flat blob keeps matching simple), a value of its kind, no pointer
 * missing, and each type once so that matching has one answer. */
static CK_RV member_check(const CK_ATTRIBUTE *t, CK_ULONG i)
{
    attr_kind kind = schema_kind(t[i].type);
    ENSURE(kind != KIND_ATTRS, CKR_ATTRIBUTE_VALUE_INVALID);
    ENSURE(schema_kind_valid(kind, t[i].pValue, t[i].ulValueLen),
           CKR_ATTRIBUTE_VALUE_INVALID);
    for (CK_ULONG j = 0; j < i; j++)
        ENSURE(t[j].type != t[i].type, CKR_ATTRIBUTE_VALUE_INVALID);
    return CKR_OK;
}

CK_RV attr_array_encode(const CK_ATTRIBUTE *t, CK_ULONG n, uint8_t **out, size_t *outlen)
{
    size_t total = 0;
    *out = NULL;
    *outlen = 0;
    ENSURE(n == 0 || t != NULL, CKR_ATTRIBUTE_VALUE_INVALID);
    for (CK_ULONG i = 0; i < n; i++) {
        GUARD(member_check(t, i));
        ENSURE(t[i].ulValueLen <= SIZE_MAX - HDR_LEN - total, CKR_ATTRIBUTE_VALUE_INVALID);
        total += HDR_LEN + t[i].ulValueLen;
    }
    if (total == 0)
        return CKR_OK;

    uint8_t *blob = malloc(total);
    ENSURE(blob != NULL, CKR_HOST_MEMORY);
    uint8_t *p = blob;
    for (CK_ULONG i = 0; i < n; i++) {
        put_u64(p, t[i].type);
        put_u64(p + 8, t[i].ulValueLen);
        if (t[i].ulValueLen > 0)
            memcpy(p + HDR_LEN, t[i].pValue, t[i].ulValueLen);
        p += HDR_LEN + t[i].ulValueLen;
    }
    *out = blob;
    *outlen = total;
    return CKR_OK;
}

CK_RV attr_array_next(const uint8_t *blob, size_t len, size_t *pos, CK_ATTRIBUTE *member)
{
    ENSURE(*pos <= len && len - *pos >= HDR_LEN, CKR_ATTRIBUTE_VALUE_INVALID);
    const uint8_t *p = blob + *pos;
    uint64_t type = get_u64(p), vlen = get_u64(p + 8);
    ENSURE(type <= (CK_ULONG)-1 && vlen <= len - *pos - HDR_LEN, CKR_ATTRIBUTE_VALUE_INVALID);
    /* attr_array_encode never stores a nested array: a blob that holds one
     * was not made here (an edited store file), and its bytes must never be
     * read as a CK_ATTRIBUTE[] with pointers in it (tests/fuzz). */
    ENSURE(schema_kind((CK_ATTRIBUTE_TYPE)type) != KIND_ATTRS, CKR_ATTRIBUTE_VALUE_INVALID);
    member->type = (CK_ATTRIBUTE_TYPE)type;
    member->ulValueLen = (CK_ULONG)vlen;
    member->pValue = vlen > 0 ? (void *)(p + HDR_LEN) : NULL;
    *pos += HDR_LEN + (size_t)vlen;
    return CKR_OK;
}

CK_RV attr_array_decode(const uint8_t *blob, size_t len, attr_list *out)
{
    CK_RV rv = CKR_OK;
    attr_list tmp;
    attr_list_init(&tmp);
    attr_list_init(out);
    ENSURE(len == 0 || blob != NULL, CKR_ATTRIBUTE_VALUE_INVALID);
    for (size_t pos = 0; pos < len;) {
        CK_ATTRIBUTE m;
        GUARD_OUT(attr_array_next(blob, len, &pos, &m));
        ENSURE_OUT(attr_find(&tmp, m.type) == NULL, CKR_ATTRIBUTE_VALUE_INVALID);
        GUARD_OUT(attr_set(&tmp, m.type, m.pValue, m.ulValueLen, 0));
    }
    *out = tmp;
    attr_list_init(&tmp);
out:
    attr_list_free(&tmp);
    return rv;
}

size_t attr_array_count(const uint8_t *blob, size_t len)
{
    size_t count = 0;
    CK_ATTRIBUTE m;
    for (size_t pos = 0; pos < len; count++)
        if (attr_array_next(blob, len, &pos, &m) != CKR_OK)
            return 0;
    return count;
}

/* ---- matching ----------------------------------------------------------- */

static bool bytes_equal(const attr *a, const void *value, size_t len)
{
    if (a->len != len)
        return false;
    if (len == 0)
        return true;
    if (a->flags & ATTR_SECRET)
        return ct_memeq(a->value, value, len);
    return memcmp(a->value, value, len) == 0;
}

/* An array attribute is stored encoded: encode the template's value the same
 * way before comparing. Only CKF_ARRAY_ATTRIBUTE types can be arrays; the
 * bit is tested first to keep the schema walk off the C_FindObjects path. */
static bool member_matches(const attr *a, const CK_ATTRIBUTE *m)
{
    if (!(m->type & CKF_ARRAY_ATTRIBUTE) || schema_kind(m->type) != KIND_ATTRS)
        return bytes_equal(a, m->pValue, m->ulValueLen);
    if (m->ulValueLen % sizeof(CK_ATTRIBUTE) != 0)
        return false;
    uint8_t *blob;
    size_t len;
    if (attr_array_encode(m->pValue, m->ulValueLen / sizeof(CK_ATTRIBUTE), &blob, &len) != CKR_OK)
        return false;
    bool eq = bytes_equal(a, blob, len);
    free(blob);
    return eq;
}

bool attr_match(const attr_list *l, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    if (n > 0 && t == NULL)
        return false;
    for (CK_ULONG i = 0; i < n; i++) {
        const attr *a = attr_find(l, t[i].type);
        if (a == NULL || (a->flags & ATTR_SEALED))
            return false;
        if (t[i].ulValueLen > 0 && t[i].pValue == NULL)
            return false;
        if (!member_matches(a, &t[i]))
            return false;
    }
    return true;
}
