/* fuzz_attr_array.c -- libFuzzer harness of the flat attribute-array blob
 * (core/attr.c: CKA_WRAP_TEMPLATE and friends as stored, PKCS#11 3.2 sec.
 * 4.10): decode, the encode round trip, and the three readers of a stored
 * blob (schema_array_satisfied, schema_merge_unwrap_template, schema_get). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/schema_internal.h"
#include "fuzz.h"

/* A wrapping key built once: what a stored template is matched against. */
static attr_list REF;
static CK_OBJECT_CLASS c_secret = CKO_SECRET_KEY;
static CK_KEY_TYPE k_aes = CKK_AES;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_BYTE key16[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

#define A(type, ptr, n) { (type), (void *)(ptr), (n) }

static bool lists_equal(const attr_list *a, const attr_list *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].type != b->v[i].type || a->v[i].len != b->v[i].len ||
            (a->v[i].len > 0 && memcmp(a->v[i].value, b->v[i].value, a->v[i].len) != 0))
            return false;
    return true;
}

/* decode -> encode gives the input back byte for byte (the blob has one
 * encoding), and decoding that again gives the same list. Encode may refuse
 * only what its contract names: nested arrays and malformed values. */
static void check_round_trip(const uint8_t *data, size_t size, const attr_list *l)
{
    CK_ATTRIBUTE *t = calloc(l->n + 1, sizeof(*t));
    uint8_t *blob = NULL;
    size_t bl = 0;
    FUZZ_CHECK(t != NULL);
    for (size_t i = 0; i < l->n; i++)
        t[i] = (CK_ATTRIBUTE){ l->v[i].type, l->v[i].value, l->v[i].len };
    CK_RV rv = attr_array_encode(t, l->n, &blob, &bl);
    if (rv != CKR_OK) {
        bool refusable = false;
        for (size_t i = 0; i < l->n; i++) {
            attr_kind k = schema_kind(t[i].type);
            refusable |= k == KIND_ATTRS || !schema_kind_valid(k, t[i].pValue, t[i].ulValueLen);
        }
        FUZZ_CHECK(rv == CKR_ATTRIBUTE_VALUE_INVALID && refusable && blob == NULL && bl == 0);
        free(t);
        return;
    }
    FUZZ_CHECK(bl == size && (size == 0 || memcmp(blob, data, size) == 0));
    attr_list again;
    FUZZ_CHECK(attr_array_decode(blob, bl, &again) == CKR_OK);
    FUZZ_CHECK(lists_equal(l, &again));
    attr_list_free(&again);
    free(blob);

    /* A well-formed template: satisfied exactly when the key matches it. */
    attr a = { CKA_WRAP_TEMPLATE, size, (uint8_t *)data, 0 };
    FUZZ_CHECK(schema_array_satisfied(&a, &REF) == attr_match(&REF, t, l->n));
    free(t);
}

/* C_GetAttributeValue of a stored array, by the two-call rule at both
 * levels (sec. 5.7.5): the sizes, then the types and lengths, then values
 * into buffers of exactly those lengths, then one buffer a byte short. */
static void check_get(const uint8_t *data, size_t size, size_t count)
{
    attr_list obj;
    CK_ATTRIBUTE *inner = NULL;
    FUZZ_CHECK(attr_list_copy(&obj, &REF) == CKR_OK);
    FUZZ_CHECK(attr_set(&obj, CKA_WRAP_TEMPLATE, data, size, 0) == CKR_OK);
    CK_ATTRIBUTE q = A(CKA_WRAP_TEMPLATE, NULL, 0);
    CK_RV rv = schema_get(&obj, &q, 1);
    if (size > 0 && count == 0) {
        FUZZ_CHECK(rv == CKR_GENERAL_ERROR && q.ulValueLen == CK_UNAVAILABLE_INFORMATION);
        goto out;
    }
    FUZZ_CHECK(rv == CKR_OK && q.ulValueLen == count * sizeof(CK_ATTRIBUTE));
    inner = calloc(count + 1, sizeof(*inner));
    FUZZ_CHECK(inner != NULL);
    q.pValue = inner;
    FUZZ_CHECK(schema_get(&obj, &q, 1) == CKR_OK);
    for (size_t k = 0; k < count; k++) {
        inner[k].pValue = malloc(inner[k].ulValueLen);
        FUZZ_CHECK(inner[k].pValue != NULL);
    }
    FUZZ_CHECK(schema_get(&obj, &q, 1) == CKR_OK && q.ulValueLen == count * sizeof(CK_ATTRIBUTE));
    size_t pos = 0;
    for (size_t k = 0; k < count; k++) {
        CK_ATTRIBUTE m;
        FUZZ_CHECK(attr_array_next(data, size, &pos, &m) == CKR_OK);
        FUZZ_CHECK(inner[k].type == m.type && inner[k].ulValueLen == m.ulValueLen);
        FUZZ_CHECK(m.ulValueLen == 0 || memcmp(inner[k].pValue, m.pValue, m.ulValueLen) == 0);
    }
    if (count > 0 && inner[0].ulValueLen > 0) {
        inner[0].ulValueLen--;
        FUZZ_CHECK(schema_get(&obj, &q, 1) == CKR_BUFFER_TOO_SMALL);
        FUZZ_CHECK(inner[0].ulValueLen == CK_UNAVAILABLE_INFORMATION);
    }
out:
    for (size_t k = 0; inner != NULL && k < count; k++)
        free(inner[k].pValue);
    free(inner);
    attr_list_free(&obj);
}

/* A stored CKA_UNWRAP_TEMPLATE merged into a C_UnwrapKey template, then the
 * object built from it, as core/keys.c does. */
static void check_merge(const uint8_t *data, size_t size, size_t count)
{
    CK_ATTRIBUTE t[] = {
        A(CKA_CLASS, &c_secret, sizeof(c_secret)),
        A(CKA_KEY_TYPE, &k_aes, sizeof(k_aes)),
        A(CKA_LABEL, "unwrapped", 9),
    };
    CK_ATTRIBUTE *m = NULL;
    CK_ULONG mn = 0;
    attr u = { CKA_UNWRAP_TEMPLATE, size, (uint8_t *)data, 0 };
    CK_RV rv = schema_merge_unwrap_template(&u, t, 3, &m, &mn);
    if (rv != CKR_OK) {
        FUZZ_CHECK(rv == CKR_TEMPLATE_INCONSISTENT || (rv == CKR_GENERAL_ERROR && count == 0));
        FUZZ_CHECK(m == NULL && mn == 0);
        return;
    }
    FUZZ_CHECK(m != NULL && mn >= 3 && mn <= 3 + count && memcmp(m, t, sizeof(t)) == 0);
    attr_list obj;
    rv = schema_build(TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION,
                      CK_UNAVAILABLE_INFORMATION, m, mn, &obj);
    FUZZ_CHECK(rv != CKR_OK || attr_find(&obj, CKA_CLASS) != NULL);
    FUZZ_CHECK(rv == CKR_OK || obj.n == 0);
    attr_list_free(&obj);
    free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    attr_list l;
    size_t count = attr_array_count(data, size);
    CK_RV rv = attr_array_decode(data, size, &l);
    if (rv == CKR_OK) {
        FUZZ_CHECK(l.n == count);
        for (size_t i = 0; i < l.n; i++)
            FUZZ_CHECK(l.v[i].flags == 0 && (l.v[i].len == 0) == (l.v[i].value == NULL));
        check_round_trip(data, size, &l);
        attr_list_free(&l);
    } else {
        FUZZ_CHECK(rv == CKR_ATTRIBUTE_VALUE_INVALID && l.n == 0 && l.v == NULL);
    }
    /* The blob as a wrapping key's stored CKA_WRAP_TEMPLATE (core/keys.c):
     * a malformed one is never satisfied (attr.h). */
    attr a = { CKA_WRAP_TEMPLATE, size, (uint8_t *)data, 0 };
    bool sat = schema_array_satisfied(&a, &REF);
    FUZZ_CHECK(!(sat && size > 0 && count == 0));
    check_get(data, size, count);
    check_merge(data, size, count);
    return 0;
}

/* ---- seeds ------------------------------------------------------------------ */
static void seed(const char *name, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    uint8_t *blob;
    size_t len;
    if (attr_array_encode(t, n, &blob, &len) != CKR_OK)
        abort();
    fuzz_seed(name, blob, len);
    free(blob);
}

static void write_seeds(void)
{
    CK_ULONG len32 = 32;
    CK_MECHANISM_TYPE mechs[] = { CKM_AES_GCM, CKM_AES_KEY_WRAP_KWP };
    CK_ATTRIBUTE matching[] = {
        A(CKA_CLASS, &c_secret, sizeof(c_secret)),
        A(CKA_KEY_TYPE, &k_aes, sizeof(k_aes)),
        A(CKA_ENCRYPT, &yes, 1),
        A(CKA_LABEL, "ref", 3),
    };
    CK_ATTRIBUTE mixed[] = {
        A(CKA_VALUE_LEN, &len32, sizeof(len32)),
        A(CKA_ALLOWED_MECHANISMS, mechs, sizeof(mechs)),
        A(CKA_START_DATE, "20240101", 8),
        A(CKA_ID, "", 0),
    };
    CK_ATTRIBUTE one[] = { A(CKA_EXTRACTABLE, &no, 1) };
    seed("matching", matching, 4);
    seed("mixed", mixed, 4);
    seed("one", one, 1);
    fuzz_seed("empty", "", 0);

    /* Regression input (found by this harness): a stored template whose
     * member is itself an attribute array, here holding a pointer. attr.h
     * calls such a blob malformed; it must be refused, never followed.
     * encode refuses to make it, so it is written by hand. */
    CK_ATTRIBUTE inner = { CKA_LABEL, (void *)(uintptr_t)0x4141414141414141ULL, 1 };
    uint8_t nested[16 + sizeof(inner)];
    for (unsigned i = 0; i < 8; i++) {
        nested[i] = (uint8_t)(CKA_WRAP_TEMPLATE >> (8 * i));
        nested[8 + i] = (uint8_t)(sizeof(inner) >> (8 * i));
    }
    memcpy(nested + 16, &inner, sizeof(inner));
    fuzz_seed("regress-nested-array", nested, sizeof(nested));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    CK_ATTRIBUTE t[] = {
        A(CKA_CLASS, &c_secret, sizeof(c_secret)),
        A(CKA_KEY_TYPE, &k_aes, sizeof(k_aes)),
        A(CKA_VALUE, key16, sizeof(key16)),
        A(CKA_LABEL, "ref", 3),
        A(CKA_ID, "id1", 3),
        A(CKA_ENCRYPT, &yes, 1),
        A(CKA_WRAP, &yes, 1),
        A(CKA_SENSITIVE, &no, 1),
        A(CKA_EXTRACTABLE, &yes, 1),
    };
    if (schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION,
                     CK_UNAVAILABLE_INFORMATION, t, 9, &REF) != CKR_OK)
        abort();
    fuzz_seeds_if_asked(write_seeds);
    return 0;
}
