/* The attribute schema as data: one row per attribute, grouped in layers the
 * way PKCS#11 3.2 sec. 4 describes objects (common, storage, key, secret key,
 * key type), and the object kinds Custos supports built from those layers.
 * The rules that read these rows live in core/template.c. */
#include <pthread.h>
#include <string.h>

#include "core/schema_internal.h"
#include "custos.h"

#define LAYER(rows) { rows, ARRAY_LEN(rows) }

/* sec. 4.2, Common object attributes. CKA_CLASS carries footnote 1. */
static const schema_row COMMON[] = {
    { CKA_CLASS, KIND_ULONG, F_REQ_CREATE, DFLT_NONE },
};

/* sec. 4.4, Common storage object attributes. Only CKA_LABEL (and
 * CKA_COPYABLE, towards FALSE) may be modified; CKA_TOKEN, CKA_PRIVATE and
 * CKA_MODIFIABLE "can be changed in the process of copying an object".
 * CKA_PRIVATE's default is token-specific: TRUE here (keys), FALSE for data
 * objects (shadowed in DATA). CKA_UNIQUE_ID is set by the core. */
static const schema_row STORAGE[] = {
    { CKA_TOKEN,       KIND_BOOL, F_COPY,                    DFLT_FALSE },
    { CKA_PRIVATE,     KIND_BOOL, F_COPY,                    DFLT_TRUE },
    { CKA_MODIFIABLE,  KIND_BOOL, F_COPY,                    DFLT_TRUE },
    { CKA_LABEL,       KIND_UTF8, F_MODIFY,                  DFLT_EMPTY },
    { CKA_COPYABLE,    KIND_BOOL, F_MODIFY | F_STICKY_FALSE, DFLT_TRUE },
    { CKA_DESTROYABLE, KIND_BOOL, 0,                         DFLT_TRUE },
    { CKA_UNIQUE_ID,   KIND_UTF8, F_TOKEN_SET,               DFLT_NONE },
};

/* sec. 4.5, Data objects: no footnotes, defaults empty. */
static const schema_row DATA[] = {
    { CKA_PRIVATE,     KIND_BOOL,  F_COPY, DFLT_FALSE },
    { CKA_APPLICATION, KIND_UTF8,  0,      DFLT_EMPTY },
    { CKA_OBJECT_ID,   KIND_BYTES, 0,      DFLT_EMPTY },
    { CKA_VALUE,       KIND_BYTES, 0,      DFLT_EMPTY },
};

/* sec. 4.7, Common key attributes. An empty CKA_ALLOWED_MECHANISMS places
 * no restriction. CKA_LOCAL and CKA_KEY_GEN_MECHANISM are computed. */
static const schema_row KEY[] = {
    { CKA_KEY_TYPE,           KIND_ULONG, F_REQ_CREATE | F_REQ_UNWRAP, DFLT_NONE },
    { CKA_ID,                 KIND_BYTES, F_MODIFY,                    DFLT_EMPTY },
    { CKA_START_DATE,         KIND_DATE,  F_MODIFY,                    DFLT_EMPTY },
    { CKA_END_DATE,           KIND_DATE,  F_MODIFY,                    DFLT_EMPTY },
    { CKA_DERIVE,             KIND_BOOL,  F_MODIFY,                    DFLT_FALSE },
    { CKA_LOCAL,              KIND_BOOL,  F_TOKEN_SET,                 DFLT_NONE },
    { CKA_KEY_GEN_MECHANISM,  KIND_ULONG, F_TOKEN_SET,                 DFLT_NONE },
    { CKA_ALLOWED_MECHANISMS, KIND_MECHS, 0,                           DFLT_EMPTY },
};

/* sec. 4.10, Common secret key attributes. Footnote 9 (token-specific
 * default) is resolved the safe way: CKA_SENSITIVE TRUE, CKA_EXTRACTABLE
 * FALSE, every usage FALSE. CKA_TRUSTED carries 8 as well as 10 so that the
 * SO can mark an existing wrapping key trusted. CKA_CHECK_VALUE is not
 * offered yet (it needs the cipher). The Custos rows are the vendor
 * attributes of pkcs11/custos.h; the token counts encryptions itself. */
static const schema_row SECRET_KEY[] = {
    { CKA_SENSITIVE,         KIND_BOOL,  F_MODIFY | F_STICKY_TRUE,  DFLT_TRUE },
    { CKA_ENCRYPT,           KIND_BOOL,  F_MODIFY,                  DFLT_FALSE },
    { CKA_DECRYPT,           KIND_BOOL,  F_MODIFY,                  DFLT_FALSE },
    { CKA_SIGN,              KIND_BOOL,  F_MODIFY,                  DFLT_FALSE },
    { CKA_VERIFY,            KIND_BOOL,  F_MODIFY,                  DFLT_FALSE },
    { CKA_WRAP,              KIND_BOOL,  F_MODIFY,                  DFLT_FALSE },
    { CKA_UNWRAP,            KIND_BOOL,  F_MODIFY,                  DFLT_FALSE },
    { CKA_EXTRACTABLE,       KIND_BOOL,  F_MODIFY | F_STICKY_FALSE, DFLT_FALSE },
    { CKA_ALWAYS_SENSITIVE,  KIND_BOOL,  F_TOKEN_SET,               DFLT_NONE },
    { CKA_NEVER_EXTRACTABLE, KIND_BOOL,  F_TOKEN_SET,               DFLT_NONE },
    { CKA_WRAP_WITH_TRUSTED, KIND_BOOL,  F_MODIFY | F_STICKY_TRUE,  DFLT_FALSE },
    { CKA_TRUSTED,           KIND_BOOL,  F_MODIFY | F_SO_TRUE,      DFLT_FALSE },
    { CKA_WRAP_TEMPLATE,     KIND_ATTRS, 0,                         DFLT_EMPTY },
    { CKA_UNWRAP_TEMPLATE,   KIND_ATTRS, 0,                         DFLT_EMPTY },
    { CKA_DERIVE_TEMPLATE,   KIND_ATTRS, 0,                         DFLT_EMPTY },

    /* Key families (docs/key-families.md): the name is given once; the
     * version, the times and the state are the token's to set (the state
     * may then be changed by an admin: suspend, resume). */
    { CKA_CUSTOS_FAMILY,          KIND_UTF8,  0,           DFLT_NONE },
    { CKA_CUSTOS_VERSION,         KIND_ULONG, F_TOKEN_SET, DFLT_NONE },
    { CKA_CUSTOS_STATE,           KIND_ULONG, F_TOKEN_SET | F_MODIFY, DFLT_NONE },
    { CKA_CUSTOS_CREATED,         KIND_ULONG, F_TOKEN_SET, DFLT_NONE },
    { CKA_CUSTOS_ROTATED,         KIND_ULONG, F_TOKEN_SET, DFLT_NONE },
    { CKA_CUSTOS_NOT_AFTER,       KIND_ULONG, F_MODIFY,    DFLT_NONE },
    { CKA_CUSTOS_ROTATION_PERIOD, KIND_ULONG, F_MODIFY,    DFLT_NONE },
    { CKA_CUSTOS_ENCRYPT_COUNT,   KIND_ULONG, F_TOKEN_SET, DFLT_ZERO },
    { CKA_CUSTOS_ALLOWED_USERS,   KIND_UTF8,  F_MODIFY,    DFLT_NONE },
};

/* Key types whose value length the caller chooses (sec. 6.x: AES, generic
 * secret, HMAC keys): CKA_VALUE 1,4,6,7 and CKA_VALUE_LEN 3. The standard
 * also marks CKA_VALUE_LEN 2 (not at C_CreateObject); Custos accepts it
 * there when it agrees with CKA_VALUE (template.c). CKA_VALUE_LEN is allowed
 * at C_UnwrapKey, where padded unwrapping mechanisms need it. */
static const schema_row VALUE_CHOSEN[] = {
    { CKA_VALUE,     KIND_BYTES, F_REQ_CREATE | F_NO_GENERATE | F_NO_UNWRAP | F_SENSITIVE,
      DFLT_NONE },
    { CKA_VALUE_LEN, KIND_ULONG, F_REQ_GENERATE, DFLT_NONE },
};

/* Key types of one fixed size (ChaCha20: 32 bytes): CKA_VALUE_LEN may be
 * left out at generation; the token fills it. */
static const schema_row VALUE_FIXED[] = {
    { CKA_VALUE,     KIND_BYTES, F_REQ_CREATE | F_NO_GENERATE | F_NO_UNWRAP | F_SENSITIVE,
      DFLT_NONE },
    { CKA_VALUE_LEN, KIND_ULONG, 0, DFLT_NONE },
};

static const schema_layer L_COMMON = LAYER(COMMON);
static const schema_layer L_STORAGE = LAYER(STORAGE);
static const schema_layer L_DATA = LAYER(DATA);
static const schema_layer L_KEY = LAYER(KEY);
static const schema_layer L_SECRET_KEY = LAYER(SECRET_KEY);
static const schema_layer L_VALUE_CHOSEN = LAYER(VALUE_CHOSEN);
static const schema_layer L_VALUE_FIXED = LAYER(VALUE_FIXED);

#define NO_KT CK_UNAVAILABLE_INFORMATION
#define MADE_ALL (OP_BIT(TMPL_CREATE) | OP_BIT(TMPL_GENERATE) | OP_BIT(TMPL_UNWRAP))
#define SECRET(kt, value_layer, lo, hi, step)                                    \
    { CKO_SECRET_KEY, kt, MADE_ALL,                                            \
      { &value_layer, &L_SECRET_KEY, &L_KEY, &L_STORAGE, &L_COMMON, NULL },    \
      lo, hi, step }

/* Generic secret and HMAC keys: any length is allowed by the standard;
 * Custos bounds them to 1..512 bytes (an HMAC key longer than the hash
 * block is hashed first, so more buys nothing). */
static const schema_class CLASSES[] = {
    { CKO_DATA, NO_KT, OP_BIT(TMPL_CREATE),
      { &L_DATA, &L_STORAGE, &L_COMMON, NULL }, 0, 0, 0 },
    SECRET(CKK_AES, L_VALUE_CHOSEN, 16, 32, 8),
    SECRET(CKK_GENERIC_SECRET, L_VALUE_CHOSEN, 1, 512, 1),
    SECRET(CKK_SHA256_HMAC, L_VALUE_CHOSEN, 1, 512, 1),
    SECRET(CKK_SHA384_HMAC, L_VALUE_CHOSEN, 1, 512, 1),
    SECRET(CKK_SHA512_HMAC, L_VALUE_CHOSEN, 1, 512, 1),
    SECRET(CKK_CHACHA20, L_VALUE_FIXED, 32, 32, 1),
};

const schema_class *schema_class_find(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt)
{
    for (size_t i = 0; i < ARRAY_LEN(CLASSES); i++) {
        const schema_class *c = &CLASSES[i];
        if (c->cls == cls && (c->kt == NO_KT || c->kt == kt))
            return c;
    }
    return NULL;
}

bool schema_class_keyed(CK_OBJECT_CLASS cls)
{
    for (size_t i = 0; i < ARRAY_LEN(CLASSES); i++)
        if (CLASSES[i].cls == cls && CLASSES[i].kt != NO_KT)
            return true;
    return false;
}

bool schema_class_known(CK_OBJECT_CLASS cls)
{
    for (size_t i = 0; i < ARRAY_LEN(CLASSES); i++)
        if (CLASSES[i].cls == cls)
            return true;
    return false;
}

const schema_class *schema_class_of(const attr_list *obj)
{
    CK_ULONG cls, kt = NO_KT;
    if (!attr_get_ulong(obj, CKA_CLASS, &cls))
        return NULL;
    if (schema_class_keyed(cls) && !attr_get_ulong(obj, CKA_KEY_TYPE, &kt))
        return NULL;
    return schema_class_find(cls, kt);
}

static const schema_row *layer_find(const schema_layer *l, CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->rows[i].type == type)
            return &l->rows[i];
    return NULL;
}

const schema_row *schema_row_find(const schema_class *c, CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < SCHEMA_MAX_LAYERS && c->layers[i] != NULL; i++) {
        const schema_row *r = layer_find(c->layers[i], type);
        if (r != NULL)
            return r;
    }
    return NULL;
}

/* Each class's rows without the shadowed ones, in layer order: built once
 * (every object made walks them twice: checking what is required, filling
 * defaults), instead of a look-up through the layers per row, which was a
 * tenth of a key unwrap. */
#define SCHEMA_MAX_ROWS 128
typedef struct flat_rows {
    const schema_row *rows[SCHEMA_MAX_ROWS];
    size_t n;
    bool ok; /* false: more rows than fit (the slow walk is used) */
} flat_rows;
static flat_rows FLAT[ARRAY_LEN(CLASSES)];
static pthread_once_t flat_once = PTHREAD_ONCE_INIT;

static void flat_build(void)
{
    for (size_t k = 0; k < ARRAY_LEN(CLASSES); k++) {
        const schema_class *c = &CLASSES[k];
        flat_rows *f = &FLAT[k];
        f->ok = true;
        for (size_t i = 0; i < SCHEMA_MAX_LAYERS && c->layers[i] != NULL; i++) {
            const schema_layer *l = c->layers[i];
            for (size_t j = 0; j < l->n; j++) {
                if (schema_row_find(c, l->rows[j].type) != &l->rows[j])
                    continue; /* shadowed by a more specific layer */
                if (f->n == SCHEMA_MAX_ROWS)
                    f->ok = false;
                else
                    f->rows[f->n++] = &l->rows[j];
            }
        }
    }
}

CK_RV schema_each_row(const schema_class *c, schema_row_fn fn, void *ctx)
{
    pthread_once(&flat_once, flat_build);
    if (c >= CLASSES && c < CLASSES + ARRAY_LEN(CLASSES) && FLAT[c - CLASSES].ok) {
        const flat_rows *f = &FLAT[c - CLASSES];
        for (size_t i = 0; i < f->n; i++)
            GUARD(fn(f->rows[i], ctx));
        return CKR_OK;
    }
    for (size_t i = 0; i < SCHEMA_MAX_LAYERS && c->layers[i] != NULL; i++) {
        const schema_layer *l = c->layers[i];
        for (size_t j = 0; j < l->n; j++) {
            if (schema_row_find(c, l->rows[j].type) != &l->rows[j])
                continue; /* shadowed by a more specific layer */
            GUARD(fn(&l->rows[j], ctx));
        }
    }
    return CKR_OK;
}

attr_kind schema_kind(CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < ARRAY_LEN(CLASSES); i++) {
        const schema_row *r = schema_row_find(&CLASSES[i], type);
        if (r != NULL)
            return r->kind;
    }
    return KIND_NONE;
}

static bool date_valid(const uint8_t *v, size_t len)
{
    if (len == 0)
        return true;
    if (len != sizeof(CK_DATE))
        return false;
    for (size_t i = 0; i < len; i++)
        if (v[i] < '0' || v[i] > '9')
            return false;
    return true;
}

bool schema_kind_valid(attr_kind kind, const void *value, size_t len)
{
    const uint8_t *v = value;
    if (len > 0 && value == NULL)
        return false;
    switch (kind) {
    case KIND_BOOL:
        return len == sizeof(CK_BBOOL) && (v[0] == CK_FALSE || v[0] == CK_TRUE);
    case KIND_ULONG:
        return len == sizeof(CK_ULONG);
    case KIND_DATE:
        return date_valid(v, len);
    case KIND_ATTRS:
        return len % sizeof(CK_ATTRIBUTE) == 0;
    case KIND_MECHS:
        return len % sizeof(CK_MECHANISM_TYPE) == 0;
    case KIND_BYTES:
    case KIND_UTF8:
    case KIND_NONE:
        return true;
    }
    return false;
}

bool schema_value_len_ok(const schema_class *c, size_t len)
{
    return c->value_max > 0 && len >= c->value_min && len <= c->value_max &&
           (len - c->value_min) % c->value_step == 0;
}

bool schema_is_secret(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < ARRAY_LEN(CLASSES); i++) {
        if (CLASSES[i].cls != cls)
            continue;
        const schema_row *r = schema_row_find(&CLASSES[i], type);
        if (r != NULL && (r->flags & F_SENSITIVE))
            return true;
    }
    return false;
}

bool schema_knows(const attr_list *obj, CK_ATTRIBUTE_TYPE type)
{
    const schema_class *c = schema_class_of(obj);
    return c != NULL && schema_row_find(c, type) != NULL;
}
