/* The shape of the attribute schema, private to core/attr.c, core/schema.c and
 * core/template.c: rows carry the footnotes of the standard's attribute
 * tables (PKCS#11 3.2 sec. 4.2, "Common footnotes for object attribute
 * tables") as flags, so that the rules are read from data, not from code. */
#ifndef CUSTOS_CORE_SCHEMA_INTERNAL_H
#define CUSTOS_CORE_SCHEMA_INTERNAL_H

#include "core/attr.h"

/* How a value is checked, stored and returned. */
typedef enum attr_kind {
    KIND_NONE = 0, /* not an attribute the schema knows */
    KIND_BOOL,     /* CK_BBOOL: one byte, 0 or 1 */
    KIND_ULONG,    /* CK_ULONG and its aliases: sizeof(CK_ULONG) bytes */
    KIND_BYTES,    /* any bytes */
    KIND_UTF8,     /* RFC 2279 string: any bytes (no stricter than the standard) */
    KIND_DATE,     /* CK_DATE: empty or 8 ASCII digits */
    KIND_ATTRS,    /* CK_ATTRIBUTE[]; stored encoded by attr_array_encode;
                      only types with CKF_ARRAY_ATTRIBUTE (sec. 4.1) */
    KIND_MECHS,    /* CK_MECHANISM_TYPE[] */
} attr_kind;

/* Row flags. F1..F12 are the standard's footnotes by number. */
#define F_REQ_CREATE   (1u << 1)  /* 1: must be given to C_CreateObject */
#define F_NO_CREATE    (1u << 2)  /* 2: must not be given to C_CreateObject */
#define F_REQ_GENERATE (1u << 3)  /* 3: must be given to C_GenerateKey */
#define F_NO_GENERATE  (1u << 4)  /* 4: must not be given to C_GenerateKey */
#define F_REQ_UNWRAP   (1u << 5)  /* 5: must be given to C_UnwrapKey */
#define F_NO_UNWRAP    (1u << 6)  /* 6: must not be given to C_UnwrapKey */
#define F_SENSITIVE    (1u << 7)  /* 7: not revealed when sensitive/unextractable;
                                     kept in secure memory, sealed at rest */
#define F_MODIFY       (1u << 8)  /* 8: C_SetAttributeValue and C_CopyObject */
#define F_SO_TRUE      (1u << 10) /* 10: only the SO may set it to CK_TRUE */
#define F_STICKY_TRUE  (1u << 11) /* 11: read-only once CK_TRUE */
#define F_STICKY_FALSE (1u << 12) /* 12: read-only once CK_FALSE */
#define F_COPY         (1u << 13) /* sec. 4.4: changeable by C_CopyObject only
                                     (CKA_TOKEN, CKA_PRIVATE, CKA_MODIFIABLE) */
/* Footnotes 2, 4, 6 together: the token sets it, the caller never does. */
#define F_TOKEN_SET    (F_NO_CREATE | F_NO_GENERATE | F_NO_UNWRAP)

/* The value an attribute takes when the template does not give one. */
typedef enum attr_default {
    DFLT_NONE = 0, /* absent unless given or computed by the token */
    DFLT_FALSE,
    DFLT_TRUE,
    DFLT_EMPTY,    /* present with length 0 */
    DFLT_ZERO,     /* CK_ULONG 0 */
} attr_default;

typedef struct schema_row {
    CK_ATTRIBUTE_TYPE type;
    attr_kind kind;
    unsigned flags;
    attr_default dflt;
} schema_row;

/* A group of rows the way the standard describes objects: common, storage,
 * key, secret key, one key type. */
typedef struct schema_layer {
    const schema_row *rows;
    size_t n;
} schema_layer;

#define SCHEMA_MAX_LAYERS 6

/* One kind of object: a class, with a key type for key classes. Adding a
 * class or key type is adding one of these and its layers' rows. */
typedef struct schema_class {
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE kt;      /* CK_UNAVAILABLE_INFORMATION: the class has no key type */
    unsigned ops;        /* OP_BIT(TMPL_CREATE) ... : how objects are made */
    /* Most specific first; a row in an earlier layer shadows a later row of
     * the same type (e.g. CKA_PRIVATE's default for data objects). */
    const schema_layer *layers[SCHEMA_MAX_LAYERS];
    /* Length of CKA_VALUE in bytes: value_min..value_max in steps of
     * value_step; value_max 0 when the class has no such rule. */
    size_t value_min, value_max, value_step;
} schema_class;

#define OP_BIT(op) (1u << (op))

/* The description of (cls, kt); kt is ignored for classes without key
 * types. NULL when Custos does not support it. */
const schema_class *schema_class_find(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt);
/* Does the class have a key type (CKA_KEY_TYPE)? false for unknown ones. */
bool schema_class_keyed(CK_OBJECT_CLASS cls);
/* Is the class known at all? */
bool schema_class_known(CK_OBJECT_CLASS cls);
/* The description of an object from its CKA_CLASS / CKA_KEY_TYPE. */
const schema_class *schema_class_of(const attr_list *obj);
/* The row in effect for type in c, or NULL. */
const schema_row *schema_row_find(const schema_class *c, CK_ATTRIBUTE_TYPE type);
/* Visit every row in effect for c once (shadowed rows skipped). */
typedef CK_RV (*schema_row_fn)(const schema_row *row, void *ctx);
CK_RV schema_each_row(const schema_class *c, schema_row_fn fn, void *ctx) CUSTOS_WUR;
/* The kind of a type in any class (types keep one kind everywhere);
 * KIND_NONE when no row knows it. */
attr_kind schema_kind(CK_ATTRIBUTE_TYPE type);
/* Is a value of this kind well formed? */
bool schema_kind_valid(attr_kind kind, const void *value, size_t len);
/* Is len an allowed CKA_VALUE length for c (which has a value rule)? */
bool schema_value_len_ok(const schema_class *c, size_t len);

/* Walk an encoded attribute array (core/attr.c) in place: member gets the
 * entry at *pos (pValue points into blob, NULL when empty) and *pos moves
 * past it. CKR_ATTRIBUTE_VALUE_INVALID on a truncated entry. */
CK_RV attr_array_next(const uint8_t *blob, size_t len, size_t *pos,
                      CK_ATTRIBUTE *member) CUSTOS_WUR;
/* Number of entries of a well-formed encoded array; 0 when malformed. */
size_t attr_array_count(const uint8_t *blob, size_t len);

#endif
