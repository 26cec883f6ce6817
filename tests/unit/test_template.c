/* Unit tests of the attribute model: attribute lists (core/attr.c), the
 * schema rows (core/schema.c) and the template rules of PKCS#11 3.2 for
 * create / generate / unwrap / copy / set / get (core/template.c). */
#include <stdlib.h>
#include <string.h>

#include "cunit_main.h"
#include "core/schema_internal.h"
#include "custos.h"
#include "util/secmem.h"

/* ---- fixtures ------------------------------------------------------------ */

static CK_OBJECT_CLASS c_secret = CKO_SECRET_KEY, c_data = CKO_DATA, c_cert = CKO_CERTIFICATE;
static CK_KEY_TYPE k_aes = CKK_AES, k_generic = CKK_GENERIC_SECRET, k_hmac = CKK_SHA256_HMAC,
                   k_chacha = CKK_CHACHA20, k_des3 = CKK_DES3;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE, two = 2;
static CK_BYTE key16[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
static CK_BYTE key24[24] = { 24 };
static CK_BYTE key32[32] = { 32, 1, 2, 3 };
static CK_BYTE big[513];
static CK_ULONG len16 = 16, len20 = 20, len24 = 24, len32 = 32, zero = 0;

#define ATTR(type, ptr) { (type), (void *)(ptr), sizeof(*(ptr)) }
#define ATTRN(type, ptr, n) { (type), (void *)(ptr), (n) }
#define N(t) (sizeof(t) / sizeof((t)[0]))

static bool has_bool(const attr_list *l, CK_ATTRIBUTE_TYPE type, bool want)
{
    bool v;
    return attr_get_bool(l, type, &v) && v == want;
}

static bool has_ulong(const attr_list *l, CK_ATTRIBUTE_TYPE type, CK_ULONG want)
{
    CK_ULONG v;
    return attr_get_ulong(l, type, &v) && v == want;
}

static bool has_empty(const attr_list *l, CK_ATTRIBUTE_TYPE type)
{
    const attr *a = attr_find(l, type);
    return a != NULL && a->len == 0 && a->value == NULL;
}

/* An AES-128 key made by C_CreateObject with the extra attributes given. */
static CK_RV create_aes(const CK_ATTRIBUTE *extra, CK_ULONG n, attr_list *out)
{
    CK_ATTRIBUTE t[16] = {
        ATTR(CKA_CLASS, &c_secret),
        ATTR(CKA_KEY_TYPE, &k_aes),
        ATTR(CKA_VALUE, &key16),
    };
    CU_ASSERT_FATAL(n <= N(t) - 3);
    for (CK_ULONG i = 0; i < n; i++)
        t[3 + i] = extra[i];
    return schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION, 0, t,
                        3 + n, out);
}

/* Expect a one-attribute extra template on an AES create to fail with rv. */
static void expect_create_fails(CK_ATTRIBUTE a, CK_RV rv)
{
    attr_list l;
    CU_ASSERT_EQUAL(create_aes(&a, 1, &l), rv);
    CU_ASSERT_EQUAL(l.n, 0);
    attr_list_free(&l);
}

/* An AES key whose SENSITIVE/EXTRACTABLE are given. */
static void make_key(CK_BBOOL *sensitive, CK_BBOOL *extractable, attr_list *l)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_SENSITIVE, sensitive), ATTR(CKA_EXTRACTABLE, extractable) };
    CU_ASSERT_FATAL(create_aes(t, N(t), l) == CKR_OK);
}

static CK_RV set1(const attr_list *obj, CK_ATTRIBUTE a, bool so, attr_list *out)
{
    return schema_apply(TMPL_SET, obj, &a, 1, so, out);
}

/* ---- attribute lists ----------------------------------------------------- */

static void test_attr_list_set_replaces_and_removes(void)
{
    attr_list l;
    attr_list_init(&l);
    CU_ASSERT_EQUAL(attr_set(&l, CKA_LABEL, "abc", 3, 0), CKR_OK);
    CU_ASSERT_EQUAL(attr_set(&l, CKA_LABEL, "de", 2, 0), CKR_OK);
    CU_ASSERT_EQUAL(l.n, 1);
    CU_ASSERT_EQUAL(attr_find(&l, CKA_LABEL)->len, 2);
    CU_ASSERT_EQUAL(memcmp(attr_find(&l, CKA_LABEL)->value, "de", 2), 0);
    for (CK_ULONG i = 0; i < 40; i++) /* grows past the first capacity */
        CU_ASSERT_EQUAL(attr_set_ulong(&l, CKA_VENDOR_DEFINED + i, i), CKR_OK);
    CU_ASSERT_TRUE(has_ulong(&l, CKA_VENDOR_DEFINED + 39, 39));
    attr_remove(&l, CKA_LABEL);
    attr_remove(&l, CKA_LABEL); /* absent: no effect */
    CU_ASSERT_PTR_NULL(attr_find(&l, CKA_LABEL));
    CU_ASSERT_EQUAL(l.n, 40);
    CU_ASSERT_TRUE(has_ulong(&l, CKA_VENDOR_DEFINED, 0));
    attr_list_free(&l);
    CU_ASSERT_EQUAL(l.n, 0);
    CU_ASSERT_PTR_NULL(l.v);
}

static void test_attr_typed_reads_reject_wrong_size_and_sealed(void)
{
    attr_list l;
    attr_list_init(&l);
    bool b = false;
    CK_ULONG u = 0;
    CU_ASSERT_EQUAL(attr_set(&l, CKA_TOKEN, "\x01\x00", 2, 0), CKR_OK);
    CU_ASSERT_FALSE(attr_get_bool(&l, CKA_TOKEN, &b));
    CU_ASSERT_TRUE(attr_bool(&l, CKA_TOKEN, true));
    CU_ASSERT_FALSE(attr_bool(&l, CKA_PRIVATE, false));
    CU_ASSERT_EQUAL(attr_set(&l, CKA_VALUE_LEN, "\x01\x00\x00\x00", 4, 0), CKR_OK);
    CU_ASSERT_FALSE(attr_get_ulong(&l, CKA_VALUE_LEN, &u));
    CU_ASSERT_EQUAL(attr_set_ulong(&l, CKA_KEY_TYPE, 7), CKR_OK);
    CU_ASSERT_TRUE(attr_get_ulong(&l, CKA_KEY_TYPE, &u) && u == 7);
    CU_ASSERT_EQUAL(attr_set(&l, CKA_SENSITIVE, &yes, 1, ATTR_SEALED), CKR_OK);
    CU_ASSERT_FALSE(attr_get_bool(&l, CKA_SENSITIVE, &b));
    CU_ASSERT_EQUAL(attr_set(&l, CKA_ID, NULL, 3, 0), CKR_ARGUMENTS_BAD);
    attr_list_free(&l);
}

static void test_attr_copy_is_deep_and_keeps_secrets_in_secmem(void)
{
    attr_list a, b;
    attr_list_init(&a);
    CU_ASSERT_EQUAL(attr_set(&a, CKA_VALUE, key16, sizeof(key16), ATTR_SECRET), CKR_OK);
    CU_ASSERT_EQUAL(attr_set(&a, CKA_LABEL, "x", 1, 0), CKR_OK);
    CU_ASSERT_EQUAL(attr_set(&a, CKA_ID, NULL, 0, 0), CKR_OK);
    CU_ASSERT_TRUE(secmem_owns(attr_find(&a, CKA_VALUE)->value));
    CU_ASSERT_EQUAL(attr_list_copy(&b, &a), CKR_OK);
    const attr *va = attr_find(&a, CKA_VALUE), *vb = attr_find(&b, CKA_VALUE);
    CU_ASSERT_PTR_NOT_EQUAL(va->value, vb->value);
    CU_ASSERT_TRUE(vb->flags & ATTR_SECRET);
    CU_ASSERT_TRUE(secmem_owns(vb->value));
    CU_ASSERT_EQUAL(memcmp(vb->value, key16, 16), 0);
    CU_ASSERT_TRUE(has_empty(&b, CKA_ID));
    attr_list_free(&a);
    CU_ASSERT_EQUAL(memcmp(attr_find(&b, CKA_LABEL)->value, "x", 1), 0);
    attr_list_free(&b);
}

/* ---- schema rows --------------------------------------------------------- */

static CK_RV check_array_bit(const schema_row *row, void *ctx)
{
    (*(int *)ctx)++;
    if (row->kind == KIND_ATTRS)
        CU_ASSERT_TRUE(row->type & CKF_ARRAY_ATTRIBUTE);
    return CKR_OK;
}

static void test_schema_array_rows_carry_the_array_bit(void)
{
    static const CK_ULONG kinds[][2] = {
        { CKO_DATA, CK_UNAVAILABLE_INFORMATION }, { CKO_SECRET_KEY, CKK_AES },
        { CKO_SECRET_KEY, CKK_GENERIC_SECRET },   { CKO_SECRET_KEY, CKK_SHA256_HMAC },
        { CKO_SECRET_KEY, CKK_SHA384_HMAC },      { CKO_SECRET_KEY, CKK_SHA512_HMAC },
        { CKO_SECRET_KEY, CKK_CHACHA20 },
    };
    for (size_t i = 0; i < N(kinds); i++) {
        const schema_class *c = schema_class_find(kinds[i][0], kinds[i][1]);
        CU_ASSERT_FATAL(c != NULL);
        int rows = 0;
        CU_ASSERT_EQUAL(schema_each_row(c, check_array_bit, &rows), CKR_OK);
        CU_ASSERT_TRUE(rows > 5);
    }
    CU_ASSERT_EQUAL(schema_kind(CKA_WRAP_TEMPLATE), KIND_ATTRS);
    CU_ASSERT_EQUAL(schema_kind(CKA_UNWRAP_TEMPLATE), KIND_ATTRS);
    CU_ASSERT_EQUAL(schema_kind(CKA_DERIVE_TEMPLATE), KIND_ATTRS);
    CU_ASSERT_TRUE(CKA_WRAP_TEMPLATE & CKF_ARRAY_ATTRIBUTE);
    /* the bit alone is not the kind: */
    CU_ASSERT_EQUAL(schema_kind(CKA_ALLOWED_MECHANISMS), KIND_MECHS);
    CU_ASSERT_EQUAL(schema_kind(CKA_CUSTOS_FAMILY), KIND_UTF8);
    CU_ASSERT_EQUAL(schema_kind(CKA_MODULUS), KIND_NONE);
}

struct row_seq {
    const schema_row *rows[256];
    size_t n;
};

static CK_RV collect_row(const schema_row *row, void *ctx)
{
    struct row_seq *q = ctx;
    if (q->n < N(q->rows))
        q->rows[q->n++] = row;
    return CKR_OK;
}

/* The rows come from a table built once per class; a copy of the class (not
 * in that table) takes the walk through the layers: both give the same rows
 * in the same order, each type once, the most specific layer's row winning. */
static void test_schema_rows_from_the_cache_match_the_layer_walk(void)
{
    static const CK_ULONG kinds[][2] = {
        { CKO_DATA, CK_UNAVAILABLE_INFORMATION }, { CKO_SECRET_KEY, CKK_AES },
        { CKO_SECRET_KEY, CKK_GENERIC_SECRET },   { CKO_SECRET_KEY, CKK_SHA256_HMAC },
        { CKO_SECRET_KEY, CKK_CHACHA20 },
    };
    for (size_t i = 0; i < N(kinds); i++) {
        const schema_class *c = schema_class_find(kinds[i][0], kinds[i][1]);
        CU_ASSERT_FATAL(c != NULL);
        schema_class copy = *c;
        static struct row_seq a, b;
        a.n = b.n = 0;
        CU_ASSERT_EQUAL(schema_each_row(c, collect_row, &a), CKR_OK);
        CU_ASSERT_EQUAL(schema_each_row(&copy, collect_row, &b), CKR_OK);
        CU_ASSERT_EQUAL_FATAL(a.n, b.n);
        CU_ASSERT_TRUE(a.n > 5);
        for (size_t k = 0; k < a.n; k++) {
            CU_ASSERT_PTR_EQUAL(a.rows[k], b.rows[k]);
            CU_ASSERT_PTR_EQUAL(schema_row_find(c, a.rows[k]->type), a.rows[k]);
            for (size_t m = 0; m < k; m++)
                CU_ASSERT_NOT_EQUAL(a.rows[m]->type, a.rows[k]->type);
        }
    }
}

static void test_schema_secret_and_known_attributes(void)
{
    CU_ASSERT_TRUE(schema_is_secret(CKO_SECRET_KEY, CKA_VALUE));
    CU_ASSERT_FALSE(schema_is_secret(CKO_DATA, CKA_VALUE));
    CU_ASSERT_FALSE(schema_is_secret(CKO_SECRET_KEY, CKA_LABEL));
    attr_list l;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &l) == CKR_OK);
    CU_ASSERT_TRUE(schema_knows(&l, CKA_WRAP_TEMPLATE));
    CU_ASSERT_TRUE(schema_knows(&l, CKA_CUSTOS_ENCRYPT_COUNT));
    CU_ASSERT_FALSE(schema_knows(&l, CKA_APPLICATION));
    CU_ASSERT_FALSE(schema_knows(&l, CKA_MODULUS));
    attr_list_free(&l);
}

/* ---- C_CreateObject ----------------------------------------------------- */

static void test_create_aes_key_fills_safe_defaults(void)
{
    attr_list l;
    CU_ASSERT_EQUAL_FATAL(create_aes(NULL, 0, &l), CKR_OK);
    CU_ASSERT_TRUE(has_ulong(&l, CKA_CLASS, CKO_SECRET_KEY));
    CU_ASSERT_TRUE(has_ulong(&l, CKA_KEY_TYPE, CKK_AES));
    CU_ASSERT_TRUE(has_bool(&l, CKA_TOKEN, false));
    CU_ASSERT_TRUE(has_bool(&l, CKA_PRIVATE, true));
    CU_ASSERT_TRUE(has_bool(&l, CKA_MODIFIABLE, true));
    CU_ASSERT_TRUE(has_bool(&l, CKA_COPYABLE, true));
    CU_ASSERT_TRUE(has_bool(&l, CKA_DESTROYABLE, true));
    CU_ASSERT_TRUE(has_bool(&l, CKA_SENSITIVE, true));
    CU_ASSERT_TRUE(has_bool(&l, CKA_EXTRACTABLE, false));
    static const CK_ATTRIBUTE_TYPE off[] = { CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY,
                                             CKA_WRAP, CKA_UNWRAP, CKA_DERIVE, CKA_TRUSTED,
                                             CKA_WRAP_WITH_TRUSTED };
    for (size_t i = 0; i < N(off); i++)
        CU_ASSERT_TRUE(has_bool(&l, off[i], false));
    static const CK_ATTRIBUTE_TYPE empty[] = { CKA_LABEL, CKA_ID, CKA_START_DATE, CKA_END_DATE,
                                               CKA_ALLOWED_MECHANISMS, CKA_WRAP_TEMPLATE,
                                               CKA_UNWRAP_TEMPLATE, CKA_DERIVE_TEMPLATE };
    for (size_t i = 0; i < N(empty); i++)
        CU_ASSERT_TRUE(has_empty(&l, empty[i]));
    CU_ASSERT_TRUE(has_bool(&l, CKA_LOCAL, false));
    CU_ASSERT_TRUE(has_ulong(&l, CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION));
    CU_ASSERT_TRUE(has_bool(&l, CKA_ALWAYS_SENSITIVE, false));
    CU_ASSERT_TRUE(has_bool(&l, CKA_NEVER_EXTRACTABLE, false));
    CU_ASSERT_TRUE(has_ulong(&l, CKA_VALUE_LEN, 16));
    CU_ASSERT_TRUE(has_ulong(&l, CKA_CUSTOS_ENCRYPT_COUNT, 0));
    CU_ASSERT_PTR_NULL(attr_find(&l, CKA_UNIQUE_ID));
    CU_ASSERT_PTR_NULL(attr_find(&l, CKA_CUSTOS_FAMILY));
    const attr *v = attr_find(&l, CKA_VALUE);
    CU_ASSERT_FATAL(v != NULL);
    CU_ASSERT_TRUE(v->flags & ATTR_SECRET);
    CU_ASSERT_TRUE(secmem_owns(v->value));
    CU_ASSERT_EQUAL(memcmp(v->value, key16, 16), 0);
    attr_list_free(&l);
}

static void test_create_aes_key_with_wrong_value_length_fails(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_KEY_TYPE, &k_aes),
                         ATTRN(CKA_VALUE, key32, 20) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 3, &l),
                    CKR_ATTRIBUTE_VALUE_INVALID);
    t[2].ulValueLen = 15;
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 3, &l),
                    CKR_ATTRIBUTE_VALUE_INVALID);
    t[2].ulValueLen = 0;
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 3, &l),
                    CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ULONG ok[] = { 16, 24, 32 };
    for (size_t i = 0; i < N(ok); i++) {
        t[2].ulValueLen = ok[i];
        CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 3, &l),
                        CKR_OK);
        CU_ASSERT_TRUE(has_ulong(&l, CKA_VALUE_LEN, ok[i]));
        attr_list_free(&l);
    }
}

static void test_create_secret_key_without_value_is_incomplete(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_KEY_TYPE, &k_aes) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 2, &l),
                    CKR_TEMPLATE_INCOMPLETE);
    CU_ASSERT_EQUAL(l.n, 0);
}

static void test_create_without_class_or_key_type_is_incomplete(void)
{
    CK_ATTRIBUTE no_class[] = { ATTR(CKA_KEY_TYPE, &k_aes), ATTR(CKA_VALUE, &key16) };
    CK_ATTRIBUTE no_type[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_VALUE, &key16) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, no_class, 2, &l),
                    CKR_TEMPLATE_INCOMPLETE);
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, no_type, 2, &l),
                    CKR_TEMPLATE_INCOMPLETE);
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, NULL, 0, &l),
                    CKR_TEMPLATE_INCOMPLETE);
}

static void test_create_with_agreeing_value_len_succeeds(void)
{
    attr_list l;
    CK_ATTRIBUTE agree = ATTR(CKA_VALUE_LEN, &len16);
    CU_ASSERT_EQUAL(create_aes(&agree, 1, &l), CKR_OK);
    CU_ASSERT_TRUE(has_ulong(&l, CKA_VALUE_LEN, 16));
    attr_list_free(&l);
}

static void test_create_with_disagreeing_value_len_is_inconsistent(void)
{
    expect_create_fails((CK_ATTRIBUTE)ATTR(CKA_VALUE_LEN, &len32), CKR_TEMPLATE_INCONSISTENT);
}

static void test_create_generic_and_hmac_keys_accept_1_to_512_bytes(void)
{
    CK_KEY_TYPE *types[] = { &k_generic, &k_hmac };
    CK_ULONG lens[] = { 1, 64, 512 }, bad[] = { 0, 513 };
    attr_list l;
    for (size_t k = 0; k < N(types); k++) {
        CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_KEY_TYPE, types[k]),
                             ATTRN(CKA_VALUE, big, 0) };
        for (size_t i = 0; i < N(lens); i++) {
            t[2].ulValueLen = lens[i];
            CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 3, &l),
                            CKR_OK);
            CU_ASSERT_TRUE(has_ulong(&l, CKA_VALUE_LEN, lens[i]));
            attr_list_free(&l);
        }
        for (size_t i = 0; i < N(bad); i++) {
            t[2].ulValueLen = bad[i];
            CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 3, &l),
                            CKR_ATTRIBUTE_VALUE_INVALID);
        }
    }
}

static void test_create_chacha20_key_needs_32_bytes(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_KEY_TYPE, &k_chacha),
                         ATTRN(CKA_VALUE, key32, 31) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 3, &l),
                    CKR_ATTRIBUTE_VALUE_INVALID);
    t[2].ulValueLen = 32;
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 3, &l), CKR_OK);
    CU_ASSERT_TRUE(has_ulong(&l, CKA_VALUE_LEN, 32));
    attr_list_free(&l);
}

static void test_create_data_object_fills_data_defaults(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_data), ATTRN(CKA_APPLICATION, "app", 3),
                         ATTRN(CKA_VALUE, "payload", 7) };
    attr_list l;
    CU_ASSERT_EQUAL_FATAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION,
                                       CK_UNAVAILABLE_INFORMATION, 0, t, 3, &l), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&l, CKA_PRIVATE, false));
    CU_ASSERT_TRUE(has_bool(&l, CKA_TOKEN, false));
    CU_ASSERT_TRUE(has_bool(&l, CKA_MODIFIABLE, true));
    CU_ASSERT_TRUE(has_empty(&l, CKA_OBJECT_ID));
    CU_ASSERT_TRUE(has_empty(&l, CKA_LABEL));
    const attr *v = attr_find(&l, CKA_VALUE);
    CU_ASSERT_TRUE(v != NULL && v->len == 7 && !(v->flags & ATTR_SECRET));
    CU_ASSERT_PTR_NULL(attr_find(&l, CKA_KEY_TYPE));
    CU_ASSERT_PTR_NULL(attr_find(&l, CKA_SENSITIVE));
    CU_ASSERT_PTR_NULL(attr_find(&l, CKA_VALUE_LEN));
    attr_list_free(&l);

    CK_ATTRIBUTE bare[] = { ATTR(CKA_CLASS, &c_data) };
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, bare, 1, &l),
                    CKR_OK);
    CU_ASSERT_TRUE(has_empty(&l, CKA_VALUE));
    CU_ASSERT_TRUE(has_empty(&l, CKA_APPLICATION));
    attr_list_free(&l);
}

static void test_create_data_object_with_key_attributes_is_type_invalid(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_data), ATTR(CKA_KEY_TYPE, &k_aes) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 2, &l),
                    CKR_ATTRIBUTE_TYPE_INVALID);
    t[1] = (CK_ATTRIBUTE)ATTR(CKA_SENSITIVE, &yes);
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 2, &l),
                    CKR_ATTRIBUTE_TYPE_INVALID);
}

static void test_create_unsupported_class_or_key_type_is_value_invalid(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_cert) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 1, &l),
                    CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE d[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_KEY_TYPE, &k_des3),
                         ATTR(CKA_VALUE, &key24) };
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, d, 3, &l),
                    CKR_ATTRIBUTE_VALUE_INVALID);
}

static void test_create_token_set_attributes_are_read_only(void)
{
    CK_ULONG mech = CKM_AES_KEY_GEN;
    CK_ATTRIBUTE ro[] = {
        ATTR(CKA_LOCAL, &no),
        ATTR(CKA_ALWAYS_SENSITIVE, &yes),
        ATTR(CKA_NEVER_EXTRACTABLE, &yes),
        ATTR(CKA_KEY_GEN_MECHANISM, &mech),
        ATTRN(CKA_UNIQUE_ID, "id-1", 4),
        ATTR(CKA_CUSTOS_ENCRYPT_COUNT, &zero),
    };
    for (size_t i = 0; i < N(ro); i++)
        expect_create_fails(ro[i], CKR_ATTRIBUTE_READ_ONLY);
}

static void test_create_unknown_attribute_is_type_invalid(void)
{
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_MODULUS, key16, 16), CKR_ATTRIBUTE_TYPE_INVALID);
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_APPLICATION, "a", 1), CKR_ATTRIBUTE_TYPE_INVALID);
    expect_create_fails((CK_ATTRIBUTE)ATTR(CKA_VENDOR_DEFINED + 1, &yes),
                        CKR_ATTRIBUTE_TYPE_INVALID);
}

static void test_create_malformed_values_are_value_invalid(void)
{
    CK_ULONG u32 = 0;
    expect_create_fails((CK_ATTRIBUTE)ATTR(CKA_TOKEN, &two), CKR_ATTRIBUTE_VALUE_INVALID);
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_TOKEN, "\x01\x00", 2),
                        CKR_ATTRIBUTE_VALUE_INVALID);
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_ENCRYPT, &yes, 0), CKR_ATTRIBUTE_VALUE_INVALID);
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_CUSTOS_ROTATION_PERIOD, &u32, 4),
                        CKR_ATTRIBUTE_VALUE_INVALID);
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_ALLOWED_MECHANISMS, key16, 5),
                        CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE short_class[] = { ATTRN(CKA_CLASS, &c_secret, 4), ATTR(CKA_KEY_TYPE, &k_aes),
                                   ATTR(CKA_VALUE, &key16) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, short_class, 3,
                                 &l), CKR_ATTRIBUTE_VALUE_INVALID);
}

static void test_create_null_value_with_length_is_value_invalid(void)
{
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_LABEL, NULL, 4), CKR_ATTRIBUTE_VALUE_INVALID);
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_TOKEN, NULL, 1), CKR_ATTRIBUTE_VALUE_INVALID);
    attr_list l;
    CK_ATTRIBUTE empty_label = ATTRN(CKA_LABEL, NULL, 0);
    CU_ASSERT_EQUAL(create_aes(&empty_label, 1, &l), CKR_OK);
    CU_ASSERT_TRUE(has_empty(&l, CKA_LABEL));
    attr_list_free(&l);
}

static void test_create_dates_must_be_empty_or_eight_digits(void)
{
    attr_list l;
    CK_ATTRIBUTE ok[] = { ATTRN(CKA_START_DATE, "20250101", 8), ATTRN(CKA_END_DATE, "20240101", 8) };
    CU_ASSERT_EQUAL(create_aes(ok, 2, &l), CKR_OK); /* end before start: accepted */
    attr_list_free(&l);
    CK_ATTRIBUTE empty = ATTRN(CKA_START_DATE, NULL, 0);
    CU_ASSERT_EQUAL(create_aes(&empty, 1, &l), CKR_OK);
    attr_list_free(&l);
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_START_DATE, "2025-1-1", 8),
                        CKR_ATTRIBUTE_VALUE_INVALID);
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_END_DATE, "2025010", 7),
                        CKR_ATTRIBUTE_VALUE_INVALID);
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_END_DATE, "202501011", 9),
                        CKR_ATTRIBUTE_VALUE_INVALID);
}

static void test_create_label_accepts_any_bytes(void)
{
    attr_list l;
    CK_ATTRIBUTE label = ATTRN(CKA_LABEL, "\xff\x00\xfe", 3);
    CU_ASSERT_EQUAL(create_aes(&label, 1, &l), CKR_OK);
    CU_ASSERT_EQUAL(attr_find(&l, CKA_LABEL)->len, 3);
    attr_list_free(&l);
}

static void test_create_duplicate_with_same_value_is_accepted(void)
{
    attr_list l;
    CK_ATTRIBUTE dup[] = { ATTR(CKA_ENCRYPT, &yes), ATTR(CKA_ENCRYPT, &yes),
                           ATTR(CKA_CLASS, &c_secret) };
    CU_ASSERT_EQUAL(create_aes(dup, 3, &l), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&l, CKA_ENCRYPT, true));
    attr_list_free(&l);
}

static void test_create_duplicate_with_different_values_is_inconsistent(void)
{
    attr_list l;
    CK_ATTRIBUTE dup[] = { ATTR(CKA_ENCRYPT, &yes), ATTR(CKA_ENCRYPT, &no) };
    CU_ASSERT_EQUAL(create_aes(dup, 2, &l), CKR_TEMPLATE_INCONSISTENT);
    CK_ATTRIBUTE cls = ATTR(CKA_CLASS, &c_data);
    CU_ASSERT_EQUAL(create_aes(&cls, 1, &l), CKR_TEMPLATE_INCONSISTENT);
    CK_ATTRIBUTE labels[] = { ATTRN(CKA_LABEL, "a", 1), ATTRN(CKA_LABEL, "ab", 2) };
    CU_ASSERT_EQUAL(create_aes(labels, 2, &l), CKR_TEMPLATE_INCONSISTENT);
    CU_ASSERT_EQUAL(l.n, 0);
}

static void test_create_trusted_true_only_for_so(void)
{
    attr_list l;
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_KEY_TYPE, &k_aes),
                         ATTR(CKA_VALUE, &key16), ATTR(CKA_TRUSTED, &yes) };
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 4, &l),
                    CKR_ATTRIBUTE_READ_ONLY);
    CU_ASSERT_EQUAL(schema_build_as(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 4, false,
                                    &l), CKR_ATTRIBUTE_READ_ONLY);
    CU_ASSERT_EQUAL(schema_build_as(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 4, true, &l),
                    CKR_OK);
    CU_ASSERT_TRUE(has_bool(&l, CKA_TRUSTED, true));
    attr_list_free(&l);
    t[3].pValue = &no;
    CU_ASSERT_EQUAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 4, &l), CKR_OK);
    attr_list_free(&l);
}

static void test_create_custos_attributes_are_kept(void)
{
    CK_ULONG when = 1700000000, period = 86400;
    CK_ATTRIBUTE t[] = {
        ATTRN(CKA_CUSTOS_FAMILY, "tenant-a", 8),
        ATTR(CKA_CUSTOS_NOT_AFTER, &when),
        ATTR(CKA_CUSTOS_ROTATION_PERIOD, &period),
        ATTRN(CKA_CUSTOS_ALLOWED_USERS, "app1,app2", 9),
    };
    attr_list l;
    CU_ASSERT_EQUAL_FATAL(create_aes(t, N(t), &l), CKR_OK);
    CU_ASSERT_TRUE(has_ulong(&l, CKA_CUSTOS_ROTATION_PERIOD, 86400));
    CU_ASSERT_TRUE(has_ulong(&l, CKA_CUSTOS_NOT_AFTER, 1700000000));
    CU_ASSERT_EQUAL(attr_find(&l, CKA_CUSTOS_FAMILY)->len, 8);
    CU_ASSERT_TRUE(has_ulong(&l, CKA_CUSTOS_ENCRYPT_COUNT, 0));
    attr_list_free(&l);
}

/* Version, state and times of a family member are the token's to set
 * (docs/key-families.md). */
static void test_create_custos_token_set_attributes_are_read_only(void)
{
    CK_ULONG v = 3;
    const CK_ATTRIBUTE_TYPE types[] = { CKA_CUSTOS_VERSION, CKA_CUSTOS_STATE, CKA_CUSTOS_CREATED,
                                        CKA_CUSTOS_ROTATED, CKA_CUSTOS_ENCRYPT_COUNT };
    for (size_t i = 0; i < N(types); i++)
        expect_create_fails((CK_ATTRIBUTE){ types[i], &v, sizeof(v) }, CKR_ATTRIBUTE_READ_ONLY);
}

/* ---- C_GenerateKey ------------------------------------------------------ */

static void test_generate_aes_key_is_local_and_always_sensitive(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_VALUE_LEN, &len32), ATTR(CKA_ENCRYPT, &yes) };
    attr_list l;
    CU_ASSERT_EQUAL_FATAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_AES, CKM_AES_KEY_GEN, t,
                                       2, &l), CKR_OK);
    CU_ASSERT_TRUE(has_ulong(&l, CKA_CLASS, CKO_SECRET_KEY));
    CU_ASSERT_TRUE(has_ulong(&l, CKA_KEY_TYPE, CKK_AES));
    CU_ASSERT_TRUE(has_bool(&l, CKA_LOCAL, true));
    CU_ASSERT_TRUE(has_ulong(&l, CKA_KEY_GEN_MECHANISM, CKM_AES_KEY_GEN));
    CU_ASSERT_TRUE(has_bool(&l, CKA_ALWAYS_SENSITIVE, true));
    CU_ASSERT_TRUE(has_bool(&l, CKA_NEVER_EXTRACTABLE, true));
    CU_ASSERT_TRUE(has_bool(&l, CKA_ENCRYPT, true));
    CU_ASSERT_PTR_NULL(attr_find(&l, CKA_VALUE));
    CU_ASSERT_EQUAL(schema_set_value(&l, key32, 32), CKR_OK);
    const attr *v = attr_find(&l, CKA_VALUE);
    CU_ASSERT_TRUE(v != NULL && v->len == 32 && (v->flags & ATTR_SECRET) && secmem_owns(v->value));
    CU_ASSERT_TRUE(has_ulong(&l, CKA_VALUE_LEN, 32));
    attr_list_free(&l);
}

static void test_generate_extractable_key_is_not_never_extractable(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_VALUE_LEN, &len16), ATTR(CKA_SENSITIVE, &no),
                         ATTR(CKA_EXTRACTABLE, &yes) };
    attr_list l;
    CU_ASSERT_EQUAL_FATAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_AES, CKM_AES_KEY_GEN, t,
                                       3, &l), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&l, CKA_ALWAYS_SENSITIVE, false));
    CU_ASSERT_TRUE(has_bool(&l, CKA_NEVER_EXTRACTABLE, false));
    attr_list_free(&l);
}

static void test_generate_without_value_len_is_incomplete(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_ENCRYPT, &yes) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_AES, CKM_AES_KEY_GEN, t, 1,
                                 &l), CKR_TEMPLATE_INCOMPLETE);
    CU_ASSERT_EQUAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_GENERIC_SECRET,
                                 CKM_GENERIC_SECRET_KEY_GEN, t, 1, &l), CKR_TEMPLATE_INCOMPLETE);
}

static void test_generate_chacha20_fills_its_fixed_length(void)
{
    attr_list l;
    CU_ASSERT_EQUAL_FATAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_CHACHA20,
                                       CKM_CHACHA20_KEY_GEN, NULL, 0, &l), CKR_OK);
    CU_ASSERT_TRUE(has_ulong(&l, CKA_VALUE_LEN, 32));
    CU_ASSERT_EQUAL(schema_set_value(&l, key16, 16), CKR_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(schema_set_value(&l, key32, 32), CKR_OK);
    attr_list_free(&l);
    CK_ATTRIBUTE t[] = { ATTR(CKA_VALUE_LEN, &len16) };
    CU_ASSERT_EQUAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_CHACHA20, CKM_CHACHA20_KEY_GEN,
                                 t, 1, &l), CKR_ATTRIBUTE_VALUE_INVALID);
}

static void test_generate_with_value_is_read_only(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_VALUE_LEN, &len16), ATTR(CKA_VALUE, &key16) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_AES, CKM_AES_KEY_GEN, t, 2,
                                 &l), CKR_ATTRIBUTE_READ_ONLY);
}

static void test_generate_value_len_out_of_range_is_value_invalid(void)
{
    CK_ULONG bad[] = { 0, 8, 20, 33, 64 };
    attr_list l;
    for (size_t i = 0; i < N(bad); i++) {
        CK_ATTRIBUTE t[] = { ATTR(CKA_VALUE_LEN, &bad[i]) };
        CU_ASSERT_EQUAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_AES, CKM_AES_KEY_GEN, t, 1,
                                     &l), CKR_ATTRIBUTE_VALUE_INVALID);
    }
    CK_ATTRIBUTE t[] = { ATTR(CKA_VALUE_LEN, &len24) };
    CU_ASSERT_EQUAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_AES, CKM_AES_KEY_GEN, t, 1,
                                 &l), CKR_OK);
    attr_list_free(&l);
}

static void test_generate_disagreeing_class_or_key_type_is_inconsistent(void)
{
    attr_list l;
    CK_ATTRIBUTE cls[] = { ATTR(CKA_VALUE_LEN, &len16), ATTR(CKA_CLASS, &c_data) };
    CU_ASSERT_EQUAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_AES, CKM_AES_KEY_GEN, cls, 2,
                                 &l), CKR_TEMPLATE_INCONSISTENT);
    CK_ATTRIBUTE kt[] = { ATTR(CKA_VALUE_LEN, &len16), ATTR(CKA_KEY_TYPE, &k_generic) };
    CU_ASSERT_EQUAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_AES, CKM_AES_KEY_GEN, kt, 2,
                                 &l), CKR_TEMPLATE_INCONSISTENT);
    kt[1].pValue = &k_aes; /* agreeing: fine */
    CU_ASSERT_EQUAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_AES, CKM_AES_KEY_GEN, kt, 2,
                                 &l), CKR_OK);
    attr_list_free(&l);
}

static void test_generate_data_object_is_inconsistent(void)
{
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_GENERATE, CKO_DATA, CK_UNAVAILABLE_INFORMATION,
                                 CKM_AES_KEY_GEN, NULL, 0, &l), CKR_TEMPLATE_INCONSISTENT);
}

static void test_set_value_checks_length_against_value_len(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_VALUE_LEN, &len32) };
    attr_list l;
    CU_ASSERT_EQUAL_FATAL(schema_build(TMPL_GENERATE, CKO_SECRET_KEY, CKK_AES, CKM_AES_KEY_GEN, t,
                                       1, &l), CKR_OK);
    CU_ASSERT_EQUAL(schema_set_value(&l, key16, 16), CKR_TEMPLATE_INCONSISTENT);
    CU_ASSERT_EQUAL(schema_set_value(&l, key32, 20), CKR_KEY_SIZE_RANGE);
    CU_ASSERT_PTR_NULL(attr_find(&l, CKA_VALUE));
    attr_list_free(&l);

    CK_ATTRIBUTE d[] = { ATTR(CKA_CLASS, &c_data) };
    CU_ASSERT_EQUAL_FATAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, d, 1, &l),
                          CKR_OK);
    CU_ASSERT_EQUAL(schema_set_value(&l, key16, 16), CKR_TEMPLATE_INCONSISTENT);
    attr_list_free(&l);
}

/* ---- C_UnwrapKey -------------------------------------------------------- */

static void test_unwrap_requires_class_and_key_type(void)
{
    CK_ATTRIBUTE no_class[] = { ATTR(CKA_KEY_TYPE, &k_aes) };
    CK_ATTRIBUTE no_type[] = { ATTR(CKA_CLASS, &c_secret) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION,
                                 CK_UNAVAILABLE_INFORMATION, 0, no_class, 1, &l),
                    CKR_TEMPLATE_INCOMPLETE);
    CU_ASSERT_EQUAL(schema_build(TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION,
                                 CK_UNAVAILABLE_INFORMATION, 0, no_type, 1, &l),
                    CKR_TEMPLATE_INCOMPLETE);
}

static void test_unwrap_aes_key_is_not_local_and_takes_length_from_value(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_KEY_TYPE, &k_aes),
                         ATTR(CKA_DECRYPT, &yes) };
    attr_list l;
    CU_ASSERT_EQUAL_FATAL(schema_build(TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION,
                                       CK_UNAVAILABLE_INFORMATION, 0, t, 3, &l), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&l, CKA_LOCAL, false));
    CU_ASSERT_TRUE(has_ulong(&l, CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION));
    CU_ASSERT_TRUE(has_bool(&l, CKA_ALWAYS_SENSITIVE, false));
    CU_ASSERT_TRUE(has_bool(&l, CKA_NEVER_EXTRACTABLE, false));
    CU_ASSERT_TRUE(has_bool(&l, CKA_SENSITIVE, true));
    CU_ASSERT_PTR_NULL(attr_find(&l, CKA_VALUE_LEN));
    CU_ASSERT_EQUAL(schema_set_value(&l, key24, 24), CKR_OK);
    CU_ASSERT_TRUE(has_ulong(&l, CKA_VALUE_LEN, 24));
    CU_ASSERT_TRUE(attr_find(&l, CKA_VALUE)->flags & ATTR_SECRET);
    attr_list_free(&l);
}

static void test_unwrap_with_value_is_read_only(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_KEY_TYPE, &k_aes),
                         ATTR(CKA_VALUE, &key16) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION,
                                 CK_UNAVAILABLE_INFORMATION, 0, t, 3, &l), CKR_ATTRIBUTE_READ_ONLY);
}

static void test_unwrap_value_len_must_match_unwrapped_value(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_KEY_TYPE, &k_aes),
                         ATTR(CKA_VALUE_LEN, &len16) };
    attr_list l;
    CU_ASSERT_EQUAL_FATAL(schema_build(TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION,
                                       CK_UNAVAILABLE_INFORMATION, 0, t, 3, &l), CKR_OK);
    CU_ASSERT_EQUAL(schema_set_value(&l, key32, 32), CKR_TEMPLATE_INCONSISTENT);
    CU_ASSERT_EQUAL(schema_set_value(&l, key16, 16), CKR_OK);
    attr_list_free(&l);
    t[2].pValue = &len20;
    CU_ASSERT_EQUAL(schema_build(TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION,
                                 CK_UNAVAILABLE_INFORMATION, 0, t, 3, &l),
                    CKR_ATTRIBUTE_VALUE_INVALID);
}

static void test_unwrap_data_object_is_inconsistent(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_data) };
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION,
                                 CK_UNAVAILABLE_INFORMATION, 0, t, 1, &l),
                    CKR_TEMPLATE_INCONSISTENT);
}

/* ---- C_SetAttributeValue ------------------------------------------------ */

static void test_set_label_and_usage_changes_copy_not_original(void)
{
    attr_list obj, out;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CK_ATTRIBUTE t[] = { ATTRN(CKA_LABEL, "kek", 3), ATTR(CKA_ENCRYPT, &yes),
                         ATTRN(CKA_ID, "\x01", 1), ATTRN(CKA_END_DATE, "20300101", 8) };
    CU_ASSERT_EQUAL_FATAL(schema_apply(TMPL_SET, &obj, t, N(t), false, &out), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&out, CKA_ENCRYPT, true));
    CU_ASSERT_EQUAL(attr_find(&out, CKA_LABEL)->len, 3);
    CU_ASSERT_TRUE(has_bool(&obj, CKA_ENCRYPT, false));
    CU_ASSERT_TRUE(has_empty(&obj, CKA_LABEL));
    CU_ASSERT_TRUE(attr_find(&out, CKA_VALUE)->flags & ATTR_SECRET);
    attr_list_free(&out);
    attr_list_free(&obj);
}

static void test_set_on_unmodifiable_object_is_prohibited(void)
{
    attr_list obj, out;
    CK_ATTRIBUTE ro = ATTR(CKA_MODIFIABLE, &no);
    CU_ASSERT_FATAL(create_aes(&ro, 1, &obj) == CKR_OK);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTRN(CKA_LABEL, "x", 1), false, &out),
                    CKR_ACTION_PROHIBITED);
    CU_ASSERT_EQUAL(out.n, 0);
    attr_list_free(&obj);
}

static void test_set_read_only_attributes_are_refused(void)
{
    attr_list obj, out;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CK_ULONG mech = CKM_AES_ECB;
    CK_ATTRIBUTE ro[] = {
        ATTR(CKA_CLASS, &c_secret),       ATTR(CKA_KEY_TYPE, &k_aes),
        ATTR(CKA_VALUE, &key16),          ATTR(CKA_VALUE_LEN, &len16),
        ATTR(CKA_TOKEN, &yes),            ATTR(CKA_PRIVATE, &no),
        ATTR(CKA_MODIFIABLE, &no),        ATTR(CKA_DESTROYABLE, &no),
        ATTR(CKA_ALLOWED_MECHANISMS, &mech), ATTRN(CKA_WRAP_TEMPLATE, NULL, 0),
        ATTR(CKA_LOCAL, &yes),            ATTR(CKA_ALWAYS_SENSITIVE, &yes),
        ATTRN(CKA_UNIQUE_ID, "u", 1),     ATTR(CKA_CUSTOS_ENCRYPT_COUNT, &zero),
    };
    for (size_t i = 0; i < N(ro); i++) {
        CU_ASSERT_EQUAL(set1(&obj, ro[i], true, &out), CKR_ATTRIBUTE_READ_ONLY);
        CU_ASSERT_EQUAL(out.n, 0);
    }
    attr_list_free(&obj);
}

static void test_set_sensitive_only_towards_true(void)
{
    attr_list plain, out;
    make_key(&no, &yes, &plain);
    CU_ASSERT_EQUAL(set1(&plain, (CK_ATTRIBUTE)ATTR(CKA_SENSITIVE, &yes), false, &out), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&out, CKA_SENSITIVE, true));
    attr_list tmp;
    CU_ASSERT_EQUAL(set1(&out, (CK_ATTRIBUTE)ATTR(CKA_SENSITIVE, &no), false, &tmp),
                    CKR_ATTRIBUTE_READ_ONLY);
    CU_ASSERT_EQUAL(tmp.n, 0);
    CU_ASSERT_EQUAL(set1(&out, (CK_ATTRIBUTE)ATTR(CKA_SENSITIVE, &yes), false, &tmp), CKR_OK);
    attr_list_free(&tmp);
    attr_list_free(&out);
    attr_list_free(&plain);
}

static void test_set_extractable_only_towards_false(void)
{
    attr_list obj, out, tmp;
    make_key(&no, &yes, &obj);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTR(CKA_EXTRACTABLE, &no), false, &out), CKR_OK);
    CU_ASSERT_EQUAL(set1(&out, (CK_ATTRIBUTE)ATTR(CKA_EXTRACTABLE, &yes), false, &tmp),
                    CKR_ATTRIBUTE_READ_ONLY);
    CU_ASSERT_EQUAL(set1(&out, (CK_ATTRIBUTE)ATTR(CKA_EXTRACTABLE, &no), false, &tmp), CKR_OK);
    attr_list_free(&tmp);
    attr_list_free(&out);
    attr_list_free(&obj);
}

static void test_set_wrap_with_trusted_only_towards_true(void)
{
    attr_list obj, out, tmp;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTR(CKA_WRAP_WITH_TRUSTED, &yes), false, &out),
                    CKR_OK);
    CU_ASSERT_EQUAL(set1(&out, (CK_ATTRIBUTE)ATTR(CKA_WRAP_WITH_TRUSTED, &no), true, &tmp),
                    CKR_ATTRIBUTE_READ_ONLY);
    attr_list_free(&out);
    attr_list_free(&obj);
}

static void test_set_copyable_only_towards_false(void)
{
    attr_list obj, out, tmp;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTR(CKA_COPYABLE, &no), false, &out), CKR_OK);
    CU_ASSERT_EQUAL(set1(&out, (CK_ATTRIBUTE)ATTR(CKA_COPYABLE, &yes), false, &tmp),
                    CKR_ATTRIBUTE_READ_ONLY);
    attr_list_free(&out);
    attr_list_free(&obj);
}

static void test_set_trusted_true_only_by_so(void)
{
    attr_list obj, out, tmp;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTR(CKA_TRUSTED, &yes), false, &out),
                    CKR_ATTRIBUTE_READ_ONLY);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTR(CKA_TRUSTED, &yes), true, &out), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&out, CKA_TRUSTED, true));
    /* dropping trust narrows what the key may do: anyone may */
    CU_ASSERT_EQUAL(set1(&out, (CK_ATTRIBUTE)ATTR(CKA_TRUSTED, &no), false, &tmp), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&tmp, CKA_TRUSTED, false));
    attr_list_free(&tmp);
    attr_list_free(&out);
    attr_list_free(&obj);
}

static void test_set_bad_templates_are_refused(void)
{
    attr_list obj, out;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTRN(CKA_MODULUS, key16, 16), false, &out),
                    CKR_ATTRIBUTE_TYPE_INVALID);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTR(CKA_ENCRYPT, &two), false, &out),
                    CKR_ATTRIBUTE_VALUE_INVALID);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTRN(CKA_LABEL, NULL, 2), false, &out),
                    CKR_ATTRIBUTE_VALUE_INVALID);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTRN(CKA_START_DATE, "2025", 4), false, &out),
                    CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE dup[] = { ATTR(CKA_ENCRYPT, &yes), ATTR(CKA_ENCRYPT, &no) };
    CU_ASSERT_EQUAL(schema_apply(TMPL_SET, &obj, dup, 2, false, &out), CKR_TEMPLATE_INCONSISTENT);
    /* a valid attribute before a bad one changes nothing */
    CK_ATTRIBUTE half[] = { ATTR(CKA_ENCRYPT, &yes), ATTR(CKA_CLASS, &c_secret) };
    CU_ASSERT_EQUAL(schema_apply(TMPL_SET, &obj, half, 2, false, &out), CKR_ATTRIBUTE_READ_ONLY);
    CU_ASSERT_EQUAL(out.n, 0);
    CU_ASSERT_TRUE(has_bool(&obj, CKA_ENCRYPT, false));
    attr_list_free(&obj);
}

static void test_set_custos_attributes_are_modifiable(void)
{
    attr_list obj, out;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CK_ULONG state = CUSTOS_STATE_SUSPENDED, period = 3600, when = 1800000000;
    CK_ATTRIBUTE t[] = { ATTR(CKA_CUSTOS_STATE, &state), ATTR(CKA_CUSTOS_ROTATION_PERIOD, &period),
                         ATTR(CKA_CUSTOS_NOT_AFTER, &when) };
    CU_ASSERT_EQUAL(schema_apply(TMPL_SET, &obj, t, 3, false, &out), CKR_OK);
    CU_ASSERT_TRUE(has_ulong(&out, CKA_CUSTOS_STATE, CUSTOS_STATE_SUSPENDED));
    CU_ASSERT_TRUE(has_ulong(&out, CKA_CUSTOS_ROTATION_PERIOD, 3600));
    attr_list_free(&out);
    /* the family, version and times never change once set */
    CK_ATTRIBUTE ro[] = { ATTRN(CKA_CUSTOS_FAMILY, "f", 1), ATTR(CKA_CUSTOS_ROTATED, &when),
                          ATTR(CKA_CUSTOS_VERSION, &period) };
    for (size_t i = 0; i < N(ro); i++)
        CU_ASSERT_EQUAL(schema_apply(TMPL_SET, &obj, &ro[i], 1, false, &out), CKR_ATTRIBUTE_READ_ONLY);
    attr_list_free(&obj);
}

static void test_set_data_object_value_is_read_only(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_data), ATTRN(CKA_VALUE, "v", 1) };
    attr_list obj, out;
    CU_ASSERT_FATAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 2, &obj) ==
                    CKR_OK);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTRN(CKA_VALUE, "w", 1), false, &out),
                    CKR_ATTRIBUTE_READ_ONLY);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTRN(CKA_APPLICATION, "w", 1), false, &out),
                    CKR_ATTRIBUTE_READ_ONLY);
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTRN(CKA_LABEL, "w", 1), false, &out), CKR_OK);
    attr_list_free(&out);
    attr_list_free(&obj);
}

/* ---- C_CopyObject ------------------------------------------------------- */

static void test_copy_may_change_token_private_and_modifiable(void)
{
    attr_list obj, out;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CU_ASSERT_FATAL(attr_set(&obj, CKA_UNIQUE_ID, "u-1", 3, 0) == CKR_OK);
    CK_ATTRIBUTE t[] = { ATTR(CKA_TOKEN, &yes), ATTR(CKA_PRIVATE, &no), ATTR(CKA_MODIFIABLE, &no),
                         ATTRN(CKA_LABEL, "copy", 4) };
    CU_ASSERT_EQUAL_FATAL(schema_apply(TMPL_COPY, &obj, t, N(t), false, &out), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&out, CKA_TOKEN, true));
    CU_ASSERT_TRUE(has_bool(&out, CKA_PRIVATE, false));
    CU_ASSERT_TRUE(has_bool(&out, CKA_MODIFIABLE, false));
    CU_ASSERT_PTR_NULL(attr_find(&out, CKA_UNIQUE_ID));
    CU_ASSERT_PTR_NOT_NULL(attr_find(&obj, CKA_UNIQUE_ID));
    const attr *v = attr_find(&out, CKA_VALUE);
    CU_ASSERT_TRUE(v != NULL && (v->flags & ATTR_SECRET) && secmem_owns(v->value));
    CU_ASSERT_PTR_NOT_EQUAL(v->value, attr_find(&obj, CKA_VALUE)->value);
    attr_list_free(&out);
    attr_list_free(&obj);
}

static void test_copy_of_unmodifiable_object_is_allowed(void)
{
    attr_list obj, out;
    CK_ATTRIBUTE ro = ATTR(CKA_MODIFIABLE, &no);
    CU_ASSERT_FATAL(create_aes(&ro, 1, &obj) == CKR_OK);
    CK_ATTRIBUTE t[] = { ATTRN(CKA_LABEL, "c", 1), ATTR(CKA_MODIFIABLE, &yes) };
    CU_ASSERT_EQUAL(schema_apply(TMPL_COPY, &obj, t, 2, false, &out), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&out, CKA_MODIFIABLE, true));
    attr_list_free(&out);
    attr_list_free(&obj);
}

static void test_copy_of_uncopyable_object_is_prohibited(void)
{
    attr_list obj, out;
    CK_ATTRIBUTE nc = ATTR(CKA_COPYABLE, &no);
    CU_ASSERT_FATAL(create_aes(&nc, 1, &obj) == CKR_OK);
    CU_ASSERT_EQUAL(schema_apply(TMPL_COPY, &obj, NULL, 0, false, &out), CKR_ACTION_PROHIBITED);
    /* but its other attributes may still be set */
    CU_ASSERT_EQUAL(set1(&obj, (CK_ATTRIBUTE)ATTR(CKA_ENCRYPT, &yes), false, &out), CKR_OK);
    attr_list_free(&out);
    attr_list_free(&obj);
}

static void test_copy_cannot_change_destroyable_class_or_value(void)
{
    attr_list obj, out;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CK_ATTRIBUTE ro[] = { ATTR(CKA_DESTROYABLE, &no), ATTR(CKA_CLASS, &c_secret),
                          ATTR(CKA_VALUE, &key16), ATTR(CKA_LOCAL, &yes) };
    for (size_t i = 0; i < N(ro); i++)
        CU_ASSERT_EQUAL(schema_apply(TMPL_COPY, &obj, &ro[i], 1, true, &out),
                        CKR_ATTRIBUTE_READ_ONLY);
    attr_list_free(&obj);
}

static void test_copy_keeps_sticky_rules(void)
{
    attr_list obj, out;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK); /* sensitive, not extractable */
    CK_ATTRIBUTE s = ATTR(CKA_SENSITIVE, &no), e = ATTR(CKA_EXTRACTABLE, &yes),
                 tr = ATTR(CKA_TRUSTED, &yes);
    CU_ASSERT_EQUAL(schema_apply(TMPL_COPY, &obj, &s, 1, false, &out), CKR_ATTRIBUTE_READ_ONLY);
    CU_ASSERT_EQUAL(schema_apply(TMPL_COPY, &obj, &e, 1, false, &out), CKR_ATTRIBUTE_READ_ONLY);
    CU_ASSERT_EQUAL(schema_apply(TMPL_COPY, &obj, &tr, 1, false, &out), CKR_ATTRIBUTE_READ_ONLY);
    attr_list_free(&obj);

    make_key(&no, &yes, &obj);
    CK_ATTRIBUTE down[] = { ATTR(CKA_SENSITIVE, &yes), ATTR(CKA_EXTRACTABLE, &no) };
    CU_ASSERT_EQUAL(schema_apply(TMPL_COPY, &obj, down, 2, false, &out), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&out, CKA_SENSITIVE, true));
    CU_ASSERT_TRUE(has_bool(&out, CKA_ALWAYS_SENSITIVE, false));
    CU_ASSERT_TRUE(has_bool(&out, CKA_NEVER_EXTRACTABLE, false));
    attr_list_free(&out);
    attr_list_free(&obj);
}

/* ---- C_GetAttributeValue ------------------------------------------------ */

static CK_RV get1(const attr_list *obj, CK_ATTRIBUTE_TYPE type, void *buf, CK_ULONG *len)
{
    CK_ATTRIBUTE t = { type, buf, *len };
    CK_RV rv = schema_get(obj, &t, 1);
    *len = t.ulValueLen;
    return rv;
}

static void test_get_value_of_sensitive_or_unextractable_key_is_refused(void)
{
    CK_BYTE buf[32];
    CK_ULONG len;
    attr_list obj;
    CK_BBOOL *cases[][2] = { { &yes, &no }, { &yes, &yes }, { &no, &no } };
    for (size_t i = 0; i < N(cases); i++) {
        make_key(cases[i][0], cases[i][1], &obj);
        len = sizeof(buf);
        CU_ASSERT_EQUAL(get1(&obj, CKA_VALUE, buf, &len), CKR_ATTRIBUTE_SENSITIVE);
        CU_ASSERT_EQUAL(len, CK_UNAVAILABLE_INFORMATION);
        len = 0;
        CU_ASSERT_EQUAL(get1(&obj, CKA_VALUE, NULL, &len), CKR_ATTRIBUTE_SENSITIVE);
        CU_ASSERT_EQUAL(len, CK_UNAVAILABLE_INFORMATION);
        len = sizeof(CK_ULONG); /* the length itself is not secret */
        CU_ASSERT_EQUAL(get1(&obj, CKA_VALUE_LEN, buf, &len), CKR_OK);
        attr_list_free(&obj);
    }
}

static void test_get_value_of_plain_extractable_key_is_returned(void)
{
    CK_BYTE buf[32] = { 0 };
    CK_ULONG len = sizeof(buf);
    attr_list obj;
    make_key(&no, &yes, &obj);
    CU_ASSERT_EQUAL(get1(&obj, CKA_VALUE, buf, &len), CKR_OK);
    CU_ASSERT_EQUAL(len, 16);
    CU_ASSERT_EQUAL(memcmp(buf, key16, 16), 0);
    attr_list_free(&obj);
}

static void test_get_sealed_value_is_sensitive(void)
{
    CK_BYTE buf[64];
    CK_ULONG len = sizeof(buf);
    attr_list obj;
    make_key(&no, &yes, &obj);
    CU_ASSERT_FATAL(attr_set(&obj, CKA_VALUE, "sealed-blob", 11, ATTR_SEALED) == CKR_OK);
    CU_ASSERT_EQUAL(get1(&obj, CKA_VALUE, buf, &len), CKR_ATTRIBUTE_SENSITIVE);
    CU_ASSERT_EQUAL(len, CK_UNAVAILABLE_INFORMATION);
    attr_list_free(&obj);
}

static void test_get_unknown_attribute_is_type_invalid(void)
{
    CK_BYTE buf[8];
    CK_ULONG len = sizeof(buf);
    attr_list obj;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CU_ASSERT_EQUAL(get1(&obj, CKA_MODULUS, buf, &len), CKR_ATTRIBUTE_TYPE_INVALID);
    CU_ASSERT_EQUAL(len, CK_UNAVAILABLE_INFORMATION);
    len = 0;
    CU_ASSERT_EQUAL(get1(&obj, CKA_UNIQUE_ID, NULL, &len), CKR_ATTRIBUTE_TYPE_INVALID);
    CU_ASSERT_EQUAL(len, CK_UNAVAILABLE_INFORMATION);
    attr_list_free(&obj);
}

static void test_get_follows_the_two_call_rule(void)
{
    CK_BYTE buf[8];
    CK_ULONG len = 0;
    attr_list obj;
    CK_ATTRIBUTE label = ATTRN(CKA_LABEL, "hello", 5);
    CU_ASSERT_FATAL(create_aes(&label, 1, &obj) == CKR_OK);
    CU_ASSERT_EQUAL(get1(&obj, CKA_LABEL, NULL, &len), CKR_OK);
    CU_ASSERT_EQUAL(len, 5);
    len = 4;
    CU_ASSERT_EQUAL(get1(&obj, CKA_LABEL, buf, &len), CKR_BUFFER_TOO_SMALL);
    CU_ASSERT_EQUAL(len, CK_UNAVAILABLE_INFORMATION);
    len = 5;
    CU_ASSERT_EQUAL(get1(&obj, CKA_LABEL, buf, &len), CKR_OK);
    CU_ASSERT_EQUAL(len, 5);
    CU_ASSERT_EQUAL(memcmp(buf, "hello", 5), 0);
    len = sizeof(buf); /* an empty attribute: length 0 */
    CU_ASSERT_EQUAL(get1(&obj, CKA_ID, buf, &len), CKR_OK);
    CU_ASSERT_EQUAL(len, 0);
    attr_list_free(&obj);
}

static void test_get_processes_every_attribute(void)
{
    attr_list obj;
    CK_ATTRIBUTE label = ATTRN(CKA_LABEL, "hello", 5);
    CU_ASSERT_FATAL(create_aes(&label, 1, &obj) == CKR_OK);
    CK_BYTE lab[8], val[32], mod[8], id[1];
    CK_BBOOL enc = 9;
    CK_ATTRIBUTE t[] = {
        ATTRN(CKA_LABEL, lab, sizeof(lab)), ATTRN(CKA_VALUE, val, sizeof(val)),
        ATTRN(CKA_MODULUS, mod, sizeof(mod)), ATTRN(CKA_LABEL, id, sizeof(id)),
        ATTR(CKA_ENCRYPT, &enc),
    };
    CU_ASSERT_EQUAL(schema_get(&obj, t, N(t)), CKR_ATTRIBUTE_SENSITIVE);
    CU_ASSERT_EQUAL(t[0].ulValueLen, 5);
    CU_ASSERT_EQUAL(t[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    CU_ASSERT_EQUAL(t[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    CU_ASSERT_EQUAL(t[3].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    CU_ASSERT_EQUAL(t[4].ulValueLen, 1);
    CU_ASSERT_EQUAL(enc, CK_FALSE);
    /* order decides which code is reported: the first failure */
    t[3].ulValueLen = sizeof(id);
    CU_ASSERT_EQUAL(schema_get(&obj, &t[2], 3), CKR_ATTRIBUTE_TYPE_INVALID);
    t[3].ulValueLen = sizeof(id);
    CU_ASSERT_EQUAL(schema_get(&obj, &t[3], 2), CKR_BUFFER_TOO_SMALL);
    CU_ASSERT_EQUAL(schema_get(&obj, &t[4], 1), CKR_OK);
    attr_list_free(&obj);
}

static void test_get_data_object_value_is_not_sensitive(void)
{
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_data), ATTRN(CKA_VALUE, "v1", 2) };
    attr_list obj;
    CU_ASSERT_FATAL(schema_build(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, 0, 0, t, 2, &obj) ==
                    CKR_OK);
    CK_BYTE buf[4];
    CK_ULONG len = sizeof(buf);
    CU_ASSERT_EQUAL(get1(&obj, CKA_VALUE, buf, &len), CKR_OK);
    CU_ASSERT_EQUAL(len, 2);
    attr_list_free(&obj);
}

/* ---- attribute arrays --------------------------------------------------- */

static void test_attr_array_encode_decode_round_trip(void)
{
    CK_ULONG mechs[2] = { CKM_AES_GCM, CKM_AES_KEY_WRAP_KWP };
    CK_ATTRIBUTE t[] = { ATTR(CKA_ENCRYPT, &yes), ATTR(CKA_KEY_TYPE, &k_aes),
                         ATTRN(CKA_LABEL, NULL, 0), ATTRN(CKA_CUSTOS_FAMILY, "fam", 3),
                         ATTRN(CKA_ALLOWED_MECHANISMS, mechs, sizeof(mechs)) };
    uint8_t *blob;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(attr_array_encode(t, N(t), &blob, &len), CKR_OK);
    CU_ASSERT_EQUAL(len, 5 * 16 + 1 + sizeof(CK_ULONG) + 3 + sizeof(mechs));
    CU_ASSERT_EQUAL(attr_array_count(blob, len), 5);
    attr_list l;
    CU_ASSERT_EQUAL_FATAL(attr_array_decode(blob, len, &l), CKR_OK);
    CU_ASSERT_EQUAL(l.n, 5);
    CU_ASSERT_TRUE(has_bool(&l, CKA_ENCRYPT, true));
    CU_ASSERT_TRUE(has_ulong(&l, CKA_KEY_TYPE, CKK_AES));
    CU_ASSERT_TRUE(has_empty(&l, CKA_LABEL));
    CU_ASSERT_EQUAL(memcmp(attr_find(&l, CKA_CUSTOS_FAMILY)->value, "fam", 3), 0);
    CU_ASSERT_EQUAL(memcmp(attr_find(&l, CKA_ALLOWED_MECHANISMS)->value, mechs, sizeof(mechs)), 0);
    CU_ASSERT_TRUE(attr_match(&l, t, N(t)));
    attr_list_free(&l);
    free(blob);

    CU_ASSERT_EQUAL(attr_array_encode(NULL, 0, &blob, &len), CKR_OK);
    CU_ASSERT_PTR_NULL(blob);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_EQUAL(attr_array_decode(NULL, 0, &l), CKR_OK);
    CU_ASSERT_EQUAL(l.n, 0);
}

static void test_attr_array_encode_refuses_bad_members(void)
{
    CK_ATTRIBUTE inner[] = { ATTR(CKA_ENCRYPT, &yes) };
    CK_ATTRIBUTE nested[] = { ATTRN(CKA_WRAP_TEMPLATE, inner, sizeof(inner)) };
    CK_ATTRIBUTE badbool[] = { ATTR(CKA_ENCRYPT, &two) };
    CK_ATTRIBUTE nullval[] = { ATTRN(CKA_LABEL, NULL, 3) };
    CK_ATTRIBUTE dup[] = { ATTR(CKA_ENCRYPT, &yes), ATTR(CKA_ENCRYPT, &yes) };
    CK_ATTRIBUTE *bad[] = { nested, badbool, nullval, dup };
    CK_ULONG nbad[] = { 1, 1, 1, 2 };
    uint8_t *blob = (uint8_t *)1;
    size_t len = 1;
    for (size_t i = 0; i < N(bad); i++) {
        CU_ASSERT_EQUAL(attr_array_encode(bad[i], nbad[i], &blob, &len),
                        CKR_ATTRIBUTE_VALUE_INVALID);
        CU_ASSERT_PTR_NULL(blob);
    }
}

static void test_attr_array_decode_rejects_truncated_blobs(void)
{
    CK_ATTRIBUTE t[] = { ATTRN(CKA_LABEL, "abcd", 4) };
    uint8_t *blob;
    size_t len;
    attr_list l;
    CU_ASSERT_EQUAL_FATAL(attr_array_encode(t, 1, &blob, &len), CKR_OK);
    for (size_t cut = 1; cut < len; cut++) {
        CU_ASSERT_EQUAL(attr_array_decode(blob, cut, &l), CKR_ATTRIBUTE_VALUE_INVALID);
        CU_ASSERT_EQUAL(l.n, 0);
        CU_ASSERT_EQUAL(attr_array_count(blob, cut), 0);
    }
    blob[8] = 0xff; /* length beyond the blob */
    CU_ASSERT_EQUAL(attr_array_decode(blob, len, &l), CKR_ATTRIBUTE_VALUE_INVALID);
    free(blob);
}

/* A stored blob whose member is itself an attribute array (never written
 * by attr_array_encode: an edited store) is refused by every reader, and
 * never read as a CK_ATTRIBUTE[] (the fuzzer's find, tests/fuzz). */
static void test_attr_array_blob_with_nested_array_is_refused(void)
{
    /* One member: CKA_WRAP_TEMPLATE, 24 bytes that look like a
     * CK_ATTRIBUTE {CKA_LABEL, pValue 0x4141414141414141, 1}. */
    static const uint8_t blob[] = {
        0x11, 0x02, 0x00, 0x40, 0, 0, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0,
        0x03, 0, 0, 0, 0, 0, 0, 0, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41,
        0x01, 0, 0, 0, 0, 0, 0, 0,
    };
    attr_list l, obj;
    CU_ASSERT_EQUAL(attr_array_decode(blob, sizeof(blob), &l), CKR_ATTRIBUTE_VALUE_INVALID);
    CU_ASSERT_EQUAL(l.n, 0);
    CU_ASSERT_EQUAL(attr_array_count(blob, sizeof(blob)), 0);
    attr stored = { CKA_UNWRAP_TEMPLATE, sizeof(blob), (uint8_t *)blob, 0 };
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CU_ASSERT_FALSE(schema_array_satisfied(&stored, &obj));
    CK_ATTRIBUTE *merged = NULL;
    CK_ULONG mn = 0;
    CK_ATTRIBUTE t[] = { ATTR(CKA_CLASS, &c_secret) };
    CU_ASSERT_NOT_EQUAL(schema_merge_unwrap_template(&stored, t, 1, &merged, &mn), CKR_OK);
    free(merged);
    attr_list_free(&obj);
}

/* A wrapping key whose CKA_WRAP_TEMPLATE asks for {ENCRYPT true, KEY_TYPE AES}. */
static void make_wrapping_key(attr_list *obj)
{
    static CK_ATTRIBUTE wt[] = { ATTR(CKA_ENCRYPT, &yes), ATTR(CKA_KEY_TYPE, &k_aes) };
    CK_ATTRIBUTE t[] = { ATTR(CKA_WRAP, &yes), ATTRN(CKA_WRAP_TEMPLATE, wt, sizeof(wt)) };
    CU_ASSERT_FATAL(create_aes(t, 2, obj) == CKR_OK);
}

static void test_wrap_template_is_returned_by_the_two_call_rule(void)
{
    attr_list obj;
    make_wrapping_key(&obj);
    CK_ATTRIBUTE inner[2];
    memset(inner, 0, sizeof(inner));
    CK_ATTRIBUTE outer = { CKA_WRAP_TEMPLATE, NULL, 0 };

    CU_ASSERT_EQUAL(schema_get(&obj, &outer, 1), CKR_OK);
    CU_ASSERT_EQUAL(outer.ulValueLen, 2 * sizeof(CK_ATTRIBUTE));

    outer.pValue = inner;
    outer.ulValueLen = sizeof(CK_ATTRIBUTE);
    CU_ASSERT_EQUAL(schema_get(&obj, &outer, 1), CKR_BUFFER_TOO_SMALL);
    CU_ASSERT_EQUAL(outer.ulValueLen, CK_UNAVAILABLE_INFORMATION);

    outer.ulValueLen = sizeof(inner); /* inner pValue NULL: lengths */
    CU_ASSERT_EQUAL(schema_get(&obj, &outer, 1), CKR_OK);
    CU_ASSERT_EQUAL(outer.ulValueLen, 2 * sizeof(CK_ATTRIBUTE));
    CU_ASSERT_EQUAL(inner[0].type, CKA_ENCRYPT);
    CU_ASSERT_EQUAL(inner[0].ulValueLen, 1);
    CU_ASSERT_EQUAL(inner[1].type, CKA_KEY_TYPE);
    CU_ASSERT_EQUAL(inner[1].ulValueLen, sizeof(CK_ULONG));

    CK_BBOOL b = 7;
    CK_ULONG kt = 0;
    inner[0].pValue = &b;
    inner[1].pValue = &kt;
    inner[1].ulValueLen = 4; /* too small */
    CU_ASSERT_EQUAL(schema_get(&obj, &outer, 1), CKR_BUFFER_TOO_SMALL);
    CU_ASSERT_EQUAL(b, CK_TRUE);
    CU_ASSERT_EQUAL(inner[0].ulValueLen, 1);
    CU_ASSERT_EQUAL(inner[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    CU_ASSERT_EQUAL(outer.ulValueLen, 2 * sizeof(CK_ATTRIBUTE));

    inner[0].type = inner[1].type = 0; /* types are ignored on input, set on output */
    inner[1].ulValueLen = sizeof(kt);
    CU_ASSERT_EQUAL(schema_get(&obj, &outer, 1), CKR_OK);
    CU_ASSERT_EQUAL(kt, CKK_AES);
    CU_ASSERT_EQUAL(inner[1].type, CKA_KEY_TYPE);

    CK_ATTRIBUTE empty = { CKA_UNWRAP_TEMPLATE, NULL, 0 };
    CU_ASSERT_EQUAL(schema_get(&obj, &empty, 1), CKR_OK);
    CU_ASSERT_EQUAL(empty.ulValueLen, 0);
    attr_list_free(&obj);
}

static void test_array_attribute_with_bad_member_is_refused_at_create(void)
{
    CK_ATTRIBUTE bad_inner[] = { ATTR(CKA_SENSITIVE, &two) };
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_UNWRAP_TEMPLATE, bad_inner, sizeof(bad_inner)),
                        CKR_ATTRIBUTE_VALUE_INVALID);
    expect_create_fails((CK_ATTRIBUTE)ATTRN(CKA_WRAP_TEMPLATE, bad_inner, sizeof(CK_ATTRIBUTE) - 1),
                        CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE a[] = { ATTR(CKA_ENCRYPT, &yes) }, b[] = { ATTR(CKA_ENCRYPT, &no) };
    CK_ATTRIBUTE dup[] = { ATTRN(CKA_WRAP_TEMPLATE, a, sizeof(a)),
                           ATTRN(CKA_WRAP_TEMPLATE, b, sizeof(b)) };
    attr_list l;
    CU_ASSERT_EQUAL(create_aes(dup, 2, &l), CKR_TEMPLATE_INCONSISTENT);
}

static void test_array_satisfied_needs_every_member(void)
{
    attr_list wrapping, target;
    make_wrapping_key(&wrapping);
    const attr *wt = attr_find(&wrapping, CKA_WRAP_TEMPLATE);
    CK_ATTRIBUTE enc = ATTR(CKA_ENCRYPT, &yes);
    CU_ASSERT_FATAL(create_aes(&enc, 1, &target) == CKR_OK);
    CU_ASSERT_TRUE(schema_array_satisfied(wt, &target));
    attr_list_free(&target);
    CU_ASSERT_FATAL(create_aes(NULL, 0, &target) == CKR_OK); /* ENCRYPT false */
    CU_ASSERT_FALSE(schema_array_satisfied(wt, &target));
    CU_ASSERT_TRUE(schema_array_satisfied(NULL, &target));
    CU_ASSERT_TRUE(schema_array_satisfied(attr_find(&wrapping, CKA_UNWRAP_TEMPLATE), &target));
    attr truncated = *wt;
    truncated.len -= 1;
    CU_ASSERT_FALSE(schema_array_satisfied(&truncated, &target));
    attr_list_free(&target);
    attr_list_free(&wrapping);
}

static void test_merge_unwrap_template_adds_template_attributes(void)
{
    CK_ATTRIBUTE ut[] = { ATTR(CKA_SENSITIVE, &yes), ATTR(CKA_DECRYPT, &yes) };
    CK_ATTRIBUTE kt[] = { ATTR(CKA_UNWRAP, &yes), ATTRN(CKA_UNWRAP_TEMPLATE, ut, sizeof(ut)) };
    attr_list kek;
    CU_ASSERT_FATAL(create_aes(kt, 2, &kek) == CKR_OK);
    const attr *tmpl = attr_find(&kek, CKA_UNWRAP_TEMPLATE);

    CK_ATTRIBUTE caller[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_KEY_TYPE, &k_aes),
                              ATTR(CKA_DECRYPT, &yes) };
    CK_ATTRIBUTE *m;
    CK_ULONG mn;
    CU_ASSERT_EQUAL_FATAL(schema_merge_unwrap_template(tmpl, caller, 3, &m, &mn), CKR_OK);
    CU_ASSERT_EQUAL(mn, 4); /* DECRYPT given by both: once */
    CU_ASSERT_EQUAL(m[3].type, CKA_SENSITIVE);
    attr_list l;
    CU_ASSERT_EQUAL(schema_build(TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION,
                                 CK_UNAVAILABLE_INFORMATION, 0, m, mn, &l), CKR_OK);
    CU_ASSERT_TRUE(has_bool(&l, CKA_SENSITIVE, true));
    CU_ASSERT_TRUE(schema_array_satisfied(tmpl, &l));
    attr_list_free(&l);
    free(m);

    CU_ASSERT_EQUAL(schema_merge_unwrap_template(NULL, caller, 3, &m, &mn), CKR_OK);
    CU_ASSERT_EQUAL(mn, 3);
    free(m);
    CU_ASSERT_EQUAL(schema_merge_unwrap_template(NULL, NULL, 0, &m, &mn), CKR_OK);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_EQUAL(mn, 0);
    attr_list_free(&kek);
}

static void test_merge_unwrap_template_conflict_is_inconsistent(void)
{
    CK_ATTRIBUTE ut[] = { ATTR(CKA_EXTRACTABLE, &no) };
    CK_ATTRIBUTE kt[] = { ATTRN(CKA_UNWRAP_TEMPLATE, ut, sizeof(ut)) };
    attr_list kek;
    CU_ASSERT_FATAL(create_aes(kt, 1, &kek) == CKR_OK);
    CK_ATTRIBUTE caller[] = { ATTR(CKA_CLASS, &c_secret), ATTR(CKA_EXTRACTABLE, &yes) };
    CK_ATTRIBUTE *m = (CK_ATTRIBUTE *)1;
    CK_ULONG mn = 9;
    CU_ASSERT_EQUAL(schema_merge_unwrap_template(attr_find(&kek, CKA_UNWRAP_TEMPLATE), caller, 2,
                                                 &m, &mn), CKR_TEMPLATE_INCONSISTENT);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_EQUAL(mn, 0);
    attr_list_free(&kek);
}

/* ---- attr_match --------------------------------------------------------- */

static void test_attr_match_compares_exact_bytes(void)
{
    attr_list obj;
    CK_ATTRIBUTE label = ATTRN(CKA_LABEL, "kek", 3);
    CU_ASSERT_FATAL(create_aes(&label, 1, &obj) == CKR_OK);
    CK_ATTRIBUTE same[] = { ATTRN(CKA_LABEL, "kek", 3), ATTR(CKA_CLASS, &c_secret) };
    CK_ATTRIBUTE other[] = { ATTRN(CKA_LABEL, "kex", 3) };
    CK_ATTRIBUTE longer[] = { ATTRN(CKA_LABEL, "kek1", 4) };
    CK_ATTRIBUTE absent[] = { ATTRN(CKA_APPLICATION, "kek", 3) };
    CK_ATTRIBUTE nullv[] = { ATTRN(CKA_LABEL, NULL, 3) };
    CU_ASSERT_TRUE(attr_match(&obj, same, 2));
    CU_ASSERT_TRUE(attr_match(&obj, NULL, 0));
    CU_ASSERT_FALSE(attr_match(&obj, other, 1));
    CU_ASSERT_FALSE(attr_match(&obj, longer, 1));
    CU_ASSERT_FALSE(attr_match(&obj, absent, 1));
    CU_ASSERT_FALSE(attr_match(&obj, nullv, 1));
    attr_list_free(&obj);
}

static void test_attr_match_secret_values_in_constant_time_path(void)
{
    attr_list obj;
    CU_ASSERT_FATAL(create_aes(NULL, 0, &obj) == CKR_OK);
    CU_ASSERT_TRUE(attr_find(&obj, CKA_VALUE)->flags & ATTR_SECRET);
    CK_BYTE guess[16];
    memcpy(guess, key16, 16);
    CK_ATTRIBUTE t = ATTRN(CKA_VALUE, guess, 16);
    CU_ASSERT_TRUE(attr_match(&obj, &t, 1));
    guess[15] ^= 1; /* differs only in the last byte */
    CU_ASSERT_FALSE(attr_match(&obj, &t, 1));
    guess[15] ^= 1;
    guess[0] ^= 0x80;
    CU_ASSERT_FALSE(attr_match(&obj, &t, 1));
    guess[0] ^= 0x80;
    t.ulValueLen = 15;
    CU_ASSERT_FALSE(attr_match(&obj, &t, 1));
    /* a value still sealed never matches, whatever the bytes */
    CU_ASSERT_FATAL(attr_set(&obj, CKA_VALUE, guess, 16, ATTR_SEALED) == CKR_OK);
    t.ulValueLen = 16;
    CU_ASSERT_FALSE(attr_match(&obj, &t, 1));
    attr_list_free(&obj);
}

static void test_attr_match_array_attribute_compares_encoded(void)
{
    attr_list obj;
    make_wrapping_key(&obj);
    CK_ATTRIBUTE wt[] = { ATTR(CKA_ENCRYPT, &yes), ATTR(CKA_KEY_TYPE, &k_aes) };
    CK_ATTRIBUTE t = ATTRN(CKA_WRAP_TEMPLATE, wt, sizeof(wt));
    CU_ASSERT_TRUE(attr_match(&obj, &t, 1));
    t.ulValueLen = sizeof(CK_ATTRIBUTE);
    CU_ASSERT_FALSE(attr_match(&obj, &t, 1));
    attr_list_free(&obj);
}

static const cunit_case CASES[] = {
    CASE(test_attr_list_set_replaces_and_removes),
    CASE(test_attr_typed_reads_reject_wrong_size_and_sealed),
    CASE(test_attr_copy_is_deep_and_keeps_secrets_in_secmem),
    CASE(test_schema_array_rows_carry_the_array_bit),
    CASE(test_schema_rows_from_the_cache_match_the_layer_walk),
    CASE(test_schema_secret_and_known_attributes),
    CASE(test_create_aes_key_fills_safe_defaults),
    CASE(test_create_aes_key_with_wrong_value_length_fails),
    CASE(test_create_secret_key_without_value_is_incomplete),
    CASE(test_create_without_class_or_key_type_is_incomplete),
    CASE(test_create_with_agreeing_value_len_succeeds),
    CASE(test_create_with_disagreeing_value_len_is_inconsistent),
    CASE(test_create_generic_and_hmac_keys_accept_1_to_512_bytes),
    CASE(test_create_chacha20_key_needs_32_bytes),
    CASE(test_create_data_object_fills_data_defaults),
    CASE(test_create_data_object_with_key_attributes_is_type_invalid),
    CASE(test_create_unsupported_class_or_key_type_is_value_invalid),
    CASE(test_create_token_set_attributes_are_read_only),
    CASE(test_create_unknown_attribute_is_type_invalid),
    CASE(test_create_malformed_values_are_value_invalid),
    CASE(test_create_null_value_with_length_is_value_invalid),
    CASE(test_create_dates_must_be_empty_or_eight_digits),
    CASE(test_create_label_accepts_any_bytes),
    CASE(test_create_duplicate_with_same_value_is_accepted),
    CASE(test_create_duplicate_with_different_values_is_inconsistent),
    CASE(test_create_trusted_true_only_for_so),
    CASE(test_create_custos_attributes_are_kept),
    CASE(test_create_custos_token_set_attributes_are_read_only),
    CASE(test_generate_aes_key_is_local_and_always_sensitive),
    CASE(test_generate_extractable_key_is_not_never_extractable),
    CASE(test_generate_without_value_len_is_incomplete),
    CASE(test_generate_chacha20_fills_its_fixed_length),
    CASE(test_generate_with_value_is_read_only),
    CASE(test_generate_value_len_out_of_range_is_value_invalid),
    CASE(test_generate_disagreeing_class_or_key_type_is_inconsistent),
    CASE(test_generate_data_object_is_inconsistent),
    CASE(test_set_value_checks_length_against_value_len),
    CASE(test_unwrap_requires_class_and_key_type),
    CASE(test_unwrap_aes_key_is_not_local_and_takes_length_from_value),
    CASE(test_unwrap_with_value_is_read_only),
    CASE(test_unwrap_value_len_must_match_unwrapped_value),
    CASE(test_unwrap_data_object_is_inconsistent),
    CASE(test_set_label_and_usage_changes_copy_not_original),
    CASE(test_set_on_unmodifiable_object_is_prohibited),
    CASE(test_set_read_only_attributes_are_refused),
    CASE(test_set_sensitive_only_towards_true),
    CASE(test_set_extractable_only_towards_false),
    CASE(test_set_wrap_with_trusted_only_towards_true),
    CASE(test_set_copyable_only_towards_false),
    CASE(test_set_trusted_true_only_by_so),
    CASE(test_set_bad_templates_are_refused),
    CASE(test_set_custos_attributes_are_modifiable),
    CASE(test_set_data_object_value_is_read_only),
    CASE(test_copy_may_change_token_private_and_modifiable),
    CASE(test_copy_of_unmodifiable_object_is_allowed),
    CASE(test_copy_of_uncopyable_object_is_prohibited),
    CASE(test_copy_cannot_change_destroyable_class_or_value),
    CASE(test_copy_keeps_sticky_rules),
    CASE(test_get_value_of_sensitive_or_unextractable_key_is_refused),
    CASE(test_get_value_of_plain_extractable_key_is_returned),
    CASE(test_get_sealed_value_is_sensitive),
    CASE(test_get_unknown_attribute_is_type_invalid),
    CASE(test_get_follows_the_two_call_rule),
    CASE(test_get_processes_every_attribute),
    CASE(test_get_data_object_value_is_not_sensitive),
    CASE(test_attr_array_encode_decode_round_trip),
    CASE(test_attr_array_encode_refuses_bad_members),
    CASE(test_attr_array_decode_rejects_truncated_blobs),
    CASE(test_wrap_template_is_returned_by_the_two_call_rule),
    CASE(test_array_attribute_with_bad_member_is_refused_at_create),
    CASE(test_attr_array_blob_with_nested_array_is_refused),
    CASE(test_array_satisfied_needs_every_member),
    CASE(test_merge_unwrap_template_adds_template_attributes),
    CASE(test_merge_unwrap_template_conflict_is_inconsistent),
    CASE(test_attr_match_compares_exact_bytes),
    CASE(test_attr_match_secret_values_in_constant_time_path),
    CASE(test_attr_match_array_attribute_compares_encoded),
};

CUNIT_MAIN("template", CASES, NULL, NULL)
