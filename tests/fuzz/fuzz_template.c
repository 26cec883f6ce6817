/* fuzz_template.c -- libFuzzer harness of the template rules (core/template.c
 * over core/schema.c, PKCS#11 3.2 sec. 4.1 and 5.7): the input is a list of
 * (type, flags, len, bytes) records made into CK_ATTRIBUTE arrays for
 * schema_build, schema_apply and schema_get, whose results are checked. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/schema_internal.h"
#include "custos.h"
#include "fuzz.h"

/* Record: sel, flags, [4-byte type if FL_RAW], len, len bytes. An
 * attribute-array type takes its bytes as nested records (two levels). A
 * 0xFE sel ends the build template; the records after it are the
 * set/copy/get template (else the same records are used). */
#define FL_NULL 0x1u  /* pValue NULL, ulValueLen as given */
#define FL_RAW 0x2u   /* the type is the next 4 bytes, not from TYPES */
#define FL_SHORT 0x4u /* an array's length one byte short of its members */
#define SPLIT 0xFE
#define MAX_ATTRS 24
#define MAX_DEPTH 2

static const CK_ATTRIBUTE_TYPE TYPES[] = {
    CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_MODIFIABLE, CKA_LABEL, CKA_COPYABLE,
    CKA_DESTROYABLE, CKA_UNIQUE_ID, CKA_APPLICATION, CKA_OBJECT_ID, CKA_VALUE, CKA_KEY_TYPE,
    CKA_ID, CKA_START_DATE, CKA_END_DATE, CKA_DERIVE, CKA_LOCAL, CKA_KEY_GEN_MECHANISM,
    CKA_ALLOWED_MECHANISMS, CKA_SENSITIVE, CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY,
    CKA_WRAP, CKA_UNWRAP, CKA_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE,
    CKA_WRAP_WITH_TRUSTED, CKA_TRUSTED, CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE,
    CKA_DERIVE_TEMPLATE, CKA_VALUE_LEN, CKA_CHECK_VALUE, CKA_MODULUS, CKA_ENCAPSULATE_TEMPLATE,
    CKA_CUSTOS_FAMILY, CKA_CUSTOS_VERSION, CKA_CUSTOS_STATE, CKA_CUSTOS_CREATED,
    CKA_CUSTOS_ROTATED, CKA_CUSTOS_NOT_AFTER, CKA_CUSTOS_ROTATION_PERIOD,
    CKA_CUSTOS_ENCRYPT_COUNT, CKA_CUSTOS_ALLOWED_USERS,
};
#define NTYPES (sizeof(TYPES) / sizeof(TYPES[0]))

/* Everything a parsed template owns, freed at once. */
typedef struct arena {
    void *p[4 * MAX_ATTRS * MAX_ATTRS];
    size_t n;
} arena;

static void *keep(arena *a, void *p)
{
    FUZZ_CHECK(p != NULL && a->n < sizeof(a->p) / sizeof(a->p[0]));
    a->p[a->n++] = p;
    return p;
}

static void arena_free(arena *a)
{
    while (a->n > 0)
        free(a->p[--a->n]);
}

typedef struct rd {
    const uint8_t *p;
    size_t n, off;
} rd;

static uint8_t byte(rd *r)
{
    return r->off < r->n ? r->p[r->off++] : 0;
}

static CK_ULONG parse(arena *a, rd *r, int depth, CK_ATTRIBUTE **out);

/* One record. Values get buffers of exactly their declared length, so that
 * AddressSanitizer sees any access past what the caller gave. */
static bool record(arena *a, rd *r, int depth, CK_ATTRIBUTE *t)
{
    if (r->off >= r->n || (depth == 0 && r->p[r->off] == SPLIT))
        return false;
    uint8_t sel = byte(r);
    uint8_t fl = byte(r);
    t->type = TYPES[sel % NTYPES];
    if (fl & FL_RAW) {
        CK_ULONG raw = 0;
        for (int i = 0; i < 4; i++)
            raw = raw << 8 | byte(r);
        t->type = (raw & 0x80000000UL) ? (raw & ~0x80000000UL) | CKA_VENDOR_DEFINED : raw;
    }
    size_t len = byte(r);
    size_t avail = r->n - r->off < len ? r->n - r->off : len;
    if (schema_kind(t->type) == KIND_ATTRS) {
        /* An attribute array is CK_ATTRIBUTE[] pointing at its values. */
        CK_ATTRIBUTE *inner = NULL;
        CK_ULONG k = 0;
        if (depth < MAX_DEPTH) {
            rd sub = { r->p + r->off, avail, 0 };
            k = parse(a, &sub, depth + 1, &inner);
        }
        t->pValue = inner;
        t->ulValueLen = k * sizeof(CK_ATTRIBUTE) - ((fl & FL_SHORT) && k > 0 ? 1 : 0);
    } else {
        t->pValue = keep(a, calloc(1, len + 1));
        memcpy(t->pValue, r->p + r->off, avail);
        t->ulValueLen = len;
    }
    r->off += avail;
    if (fl & FL_NULL)
        t->pValue = NULL;
    return true;
}

static CK_ULONG parse(arena *a, rd *r, int depth, CK_ATTRIBUTE **out)
{
    CK_ATTRIBUTE *t = keep(a, calloc(MAX_ATTRS, sizeof(*t)));
    CK_ULONG n = 0;
    while (n < MAX_ATTRS && record(a, r, depth, &t[n]))
        n++;
    *out = t;
    return n;
}

/* The records of the second template: after the SPLIT byte, or all. */
static CK_ULONG second(arena *a, const uint8_t *data, size_t size, size_t split, CK_ATTRIBUTE **t)
{
    rd r = split < size ? (rd){ data + split + 1, size - split - 1, 0 } : (rd){ data, size, 0 };
    return parse(a, &r, 0, t);
}

/* ---- the properties ------------------------------------------------------ */
static bool one_of(CK_RV rv, const CK_RV *ok, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rv == ok[i])
            return true;
    return false;
}

/* The return values attr.h gives each function. */
static const CK_RV BUILD_RV[] = {
    CKR_OK, CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_READ_ONLY, CKR_ATTRIBUTE_VALUE_INVALID,
    CKR_TEMPLATE_INCONSISTENT, CKR_TEMPLATE_INCOMPLETE, CKR_ARGUMENTS_BAD,
};
static const CK_RV APPLY_RV[] = {
    CKR_OK, CKR_ACTION_PROHIBITED, CKR_ATTRIBUTE_READ_ONLY, CKR_ATTRIBUTE_TYPE_INVALID,
    CKR_ATTRIBUTE_VALUE_INVALID, CKR_TEMPLATE_INCONSISTENT,
};
static const CK_RV GET_RV[] = {
    CKR_OK, CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_SENSITIVE, CKR_BUFFER_TOO_SMALL,
};
#define NRV(a) (sizeof(a) / sizeof((a)[0]))

static bool has_true(const attr_list *l, CK_ATTRIBUTE_TYPE type)
{
    bool v;
    return attr_get_bool(l, type, &v) && v;
}

static bool same_attr(const attr_list *a, const attr_list *b, CK_ATTRIBUTE_TYPE type)
{
    const attr *x = attr_find(a, type), *y = attr_find(b, type);
    if (x == NULL || y == NULL)
        return x == y;
    return x->len == y->len && (x->len == 0 || memcmp(x->value, y->value, x->len) == 0);
}

/* A built object: it has its class, and CKA_TRUSTED is true only for the SO
 * (sec. 4.10 footnote 10); CKA_LOCAL only from C_GenerateKey. */
static void check_built(const attr_list *o, tmpl_op op, bool so)
{
    CK_ULONG cls;
    FUZZ_CHECK(attr_get_ulong(o, CKA_CLASS, &cls) && schema_class_known(cls));
    FUZZ_CHECK(so || !has_true(o, CKA_TRUSTED));
    FUZZ_CHECK(op == TMPL_GENERATE || !has_true(o, CKA_LOCAL));
    for (size_t i = 0; i < o->n; i++)
        FUZZ_CHECK((o->v[i].len == 0) == (o->v[i].value == NULL));
}

/* C_SetAttributeValue / C_CopyObject never change what the object is, its
 * key, or move a sticky attribute back (sec. 4 footnotes 11, 12). */
static void check_applied(const attr_list *before, const attr_list *after, bool so)
{
    FUZZ_CHECK(same_attr(before, after, CKA_CLASS) && same_attr(before, after, CKA_KEY_TYPE));
    FUZZ_CHECK(same_attr(before, after, CKA_VALUE) && same_attr(before, after, CKA_VALUE_LEN));
    FUZZ_CHECK(same_attr(before, after, CKA_LOCAL));
    FUZZ_CHECK(!has_true(before, CKA_SENSITIVE) || has_true(after, CKA_SENSITIVE));
    FUZZ_CHECK(has_true(before, CKA_EXTRACTABLE) || !has_true(after, CKA_EXTRACTABLE) ||
               attr_find(before, CKA_EXTRACTABLE) == NULL);
    FUZZ_CHECK(!has_true(before, CKA_WRAP_WITH_TRUSTED) || has_true(after, CKA_WRAP_WITH_TRUSTED));
    FUZZ_CHECK(so || has_true(before, CKA_TRUSTED) || !has_true(after, CKA_TRUSTED));
}

/* C_GetAttributeValue into buffers of the declared sizes: nothing past
 * them is written (ASan), a returned length fits the buffer, and a secret
 * of a sensitive or unextractable key is never revealed (footnote 7). */
static void check_get(const attr_list *o, const uint8_t *data, size_t size, size_t split)
{
    arena a = { .n = 0 };
    CK_ATTRIBUTE *t;
    CK_ULONG n = second(&a, data, size, split, &t);
    CK_ULONG declared[MAX_ATTRS];
    for (CK_ULONG i = 0; i < n; i++)
        declared[i] = t[i].ulValueLen;
    CK_RV rv = schema_get(o, t, n);
    FUZZ_CHECK(one_of(rv, GET_RV, NRV(GET_RV)));
    CK_ULONG cls = CK_UNAVAILABLE_INFORMATION;
    (void)attr_get_ulong(o, CKA_CLASS, &cls);
    bool hidden = attr_bool(o, CKA_SENSITIVE, true) || !attr_bool(o, CKA_EXTRACTABLE, false);
    for (CK_ULONG i = 0; i < n; i++) {
        if (t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION)
            continue;
        FUZZ_CHECK(!(hidden && schema_is_secret(cls, t[i].type)));
        if (t[i].pValue != NULL)
            FUZZ_CHECK(t[i].ulValueLen <= declared[i]);
    }
    arena_free(&a);
}

static void check_apply(const attr_list *o, const uint8_t *data, size_t size, size_t split,
                        bool so)
{
    static const tmpl_op OPS[] = { TMPL_SET, TMPL_COPY };
    for (size_t k = 0; k < 2; k++) {
        arena a = { .n = 0 };
        CK_ATTRIBUTE *t;
        CK_ULONG n = second(&a, data, size, split, &t);
        attr_list out;
        CK_RV rv = schema_apply(OPS[k], o, t, n, so, &out);
        FUZZ_CHECK(one_of(rv, APPLY_RV, NRV(APPLY_RV)));
        if (rv == CKR_OK) {
            check_applied(o, &out, so);
            FUZZ_CHECK(OPS[k] == TMPL_SET || attr_find(&out, CKA_UNIQUE_ID) == NULL);
            check_get(&out, data, size, split);
        } else {
            FUZZ_CHECK(out.n == 0 && out.v == NULL);
        }
        attr_list_free(&out);
        (void)attr_match(o, t, n);
        arena_free(&a);
    }
}

/* What the object's stored templates allow: C_WrapKey and C_UnwrapKey read
 * them this way (core/keys.c). */
static void check_arrays(const attr_list *o, const uint8_t *data, size_t size, size_t split)
{
    arena a = { .n = 0 };
    CK_ATTRIBUTE *t, *m = NULL;
    CK_ULONG n = second(&a, data, size, split, &t), mn = 0;
    (void)schema_array_satisfied(attr_find(o, CKA_WRAP_TEMPLATE), o);
    if (schema_merge_unwrap_template(attr_find(o, CKA_UNWRAP_TEMPLATE), t, n, &m, &mn) == CKR_OK) {
        attr_list u;
        CK_RV rv = schema_build(TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION,
                                CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION, m, mn, &u);
        FUZZ_CHECK(one_of(rv, BUILD_RV, NRV(BUILD_RV)));
        attr_list_free(&u);
        free(m);
    }
    for (CK_ULONG i = 0; i < n; i++)
        (void)schema_knows(o, t[i].type);
    arena_free(&a);
}

/* How each object is made: C_CreateObject and C_UnwrapKey take the class
 * from the template; C_GenerateKey from the mechanism. */
static const struct combo {
    tmpl_op op;
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE kt;
    CK_MECHANISM_TYPE mech;
} COMBOS[] = {
    { TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION },
    { TMPL_UNWRAP, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION },
    { TMPL_GENERATE, CKO_SECRET_KEY, CKK_AES, CKM_AES_KEY_GEN },
    { TMPL_GENERATE, CKO_SECRET_KEY, CKK_GENERIC_SECRET, CKM_GENERIC_SECRET_KEY_GEN },
    { TMPL_GENERATE, CKO_SECRET_KEY, CKK_SHA256_HMAC, CKM_GENERIC_SECRET_KEY_GEN },
    { TMPL_GENERATE, CKO_SECRET_KEY, CKK_CHACHA20, CKM_CHACHA20_KEY_GEN },
    { TMPL_GENERATE, CKO_DATA, CK_UNAVAILABLE_INFORMATION, CKM_AES_KEY_GEN },
    { TMPL_GENERATE, CKO_PRIVATE_KEY, CKK_EC, CKM_EC_KEY_PAIR_GEN },
    { TMPL_CREATE, CKO_SECRET_KEY, CKK_AES, CK_UNAVAILABLE_INFORMATION },
    { TMPL_COPY, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t key[512] = { 1 };
    if (size == 0)
        return 0;
    /* First byte: the session kind and the key length for schema_set_value. */
    bool so = data[0] & 1;
    size_t keylen = (size_t)(data[0] >> 1) * 4;
    data++;
    size--;
    size_t split = size;
    {
        arena a = { .n = 0 };
        CK_ATTRIBUTE *t;
        rd r = { data, size, 0 };
        (void)parse(&a, &r, 0, &t);
        if (r.off < size && data[r.off] == SPLIT)
            split = r.off;
        arena_free(&a);
    }

    for (size_t k = 0; k < sizeof(COMBOS) / sizeof(COMBOS[0]); k++) {
        const struct combo *c = &COMBOS[k];
        arena a = { .n = 0 };
        CK_ATTRIBUTE *t;
        rd r = { data, split, 0 };
        CK_ULONG n = parse(&a, &r, 0, &t);
        attr_list o;
        CK_RV rv = schema_build_as(c->op, c->cls, c->kt, c->mech, t, n, so, &o);
        FUZZ_CHECK(one_of(rv, BUILD_RV, NRV(BUILD_RV)));
        arena_free(&a);
        if (rv != CKR_OK) {
            FUZZ_CHECK(o.n == 0 && o.v == NULL);
            continue;
        }
        check_built(&o, c->op, so);
        if (c->op != TMPL_CREATE) {
            rv = schema_set_value(&o, key, keylen);
            FUZZ_CHECK(rv == CKR_OK || rv == CKR_KEY_SIZE_RANGE || rv == CKR_TEMPLATE_INCONSISTENT);
            if (rv == CKR_OK) {
                const attr *v = attr_find(&o, CKA_VALUE);
                FUZZ_CHECK(v != NULL && v->len == keylen && (v->flags & ATTR_SECRET));
            }
        }
        check_get(&o, data, size, split);
        check_apply(&o, data, size, split, so);
        check_arrays(&o, data, size, split);
        attr_list_free(&o);
    }
    return 0;
}

/* ---- seeds ------------------------------------------------------------------ */
static size_t type_index(CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (TYPES[i] == type)
            return i;
    abort();
}

static size_t put(uint8_t *out, CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    out[0] = (uint8_t)type_index(type);
    out[1] = 0;
    out[2] = (uint8_t)len;
    memcpy(out + 3, v, len);
    return 3 + len;
}

static size_t put_ulong(uint8_t *out, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
    return put(out, type, &v, sizeof(v));
}

static size_t put_bool(uint8_t *out, CK_ATTRIBUTE_TYPE type, bool v)
{
    CK_BBOOL b = v ? CK_TRUE : CK_FALSE;
    return put(out, type, &b, 1);
}

static void write_seeds(void)
{
    uint8_t b[1024], in[256];
    static const uint8_t k16[16] = { 7 };
    size_t n = 0, m;

    b[n++] = 40 << 1; /* key length 160 for set_value; not SO */
    n += put_ulong(b + n, CKA_CLASS, CKO_SECRET_KEY);
    n += put_ulong(b + n, CKA_KEY_TYPE, CKK_AES);
    n += put(b + n, CKA_VALUE, k16, 16);
    n += put(b + n, CKA_LABEL, "aes", 3);
    n += put_bool(b + n, CKA_ENCRYPT, true);
    n += put_bool(b + n, CKA_SENSITIVE, false);
    n += put_bool(b + n, CKA_EXTRACTABLE, true);
    m = put_bool(in, CKA_ENCRYPT, true);
    m += put(in + m, CKA_LABEL, "x", 1);
    n += put(b + n, CKA_WRAP_TEMPLATE, in, m);
    b[n++] = SPLIT;
    n += put(b + n, CKA_LABEL, "relabelled", 10);
    n += put_bool(b + n, CKA_SENSITIVE, true);
    fuzz_seed("create-aes", b, n);
    n += put(b + n, CKA_VALUE, k16, 16);
    fuzz_seed("create-aes-set-value", b, n);

    n = 0;
    b[n++] = 8 << 1 | 1; /* 32-byte key; SO */
    n += put_ulong(b + n, CKA_VALUE_LEN, 32);
    n += put_bool(b + n, CKA_TRUSTED, true);
    n += put_bool(b + n, CKA_WRAP, true);
    n += put(b + n, CKA_START_DATE, "20250101", 8);
    n += put(b + n, CKA_CUSTOS_FAMILY, "payroll", 7);
    fuzz_seed("generate", b, n);

    n = 0;
    b[n++] = 0;
    n += put_ulong(b + n, CKA_CLASS, CKO_DATA);
    n += put(b + n, CKA_APPLICATION, "app", 3);
    n += put(b + n, CKA_VALUE, "data", 4);
    n += put_bool(b + n, CKA_PRIVATE, false);
    fuzz_seed("data", b, n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_seeds_if_asked(write_seeds);
    return 0;
}
