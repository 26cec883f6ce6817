/* The template rules of PKCS#11 3.2 sec. 4.1 and 5.7 over the schema rows of
 * core/schema.c: building new objects (C_CreateObject, C_GenerateKey,
 * C_UnwrapKey), changing them (C_SetAttributeValue, C_CopyObject), reading
 * them (C_GetAttributeValue) and the wrap/unwrap templates of sec. 4.10. */
#include <stdlib.h>
#include <string.h>

#include "core/schema_internal.h"
#include "util/secmem.h"

/* Footnotes 2/4/6 and 1/3/5, by operation. */
static const unsigned NOT_IN_OP[] = {
    [TMPL_CREATE] = F_NO_CREATE,
    [TMPL_GENERATE] = F_NO_GENERATE,
    [TMPL_UNWRAP] = F_NO_UNWRAP,
    [TMPL_COPY] = 0,
    [TMPL_SET] = 0,
};
static const unsigned REQ_IN_OP[] = {
    [TMPL_CREATE] = F_REQ_CREATE,
    [TMPL_GENERATE] = F_REQ_GENERATE,
    [TMPL_UNWRAP] = F_REQ_UNWRAP,
    [TMPL_COPY] = 0,
    [TMPL_SET] = 0,
};

static bool same_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* ---- one template attribute ------------------------------------------- */

/* What a template is checked against: the object being made (obj NULL) or
 * the object being changed (its current values drive the sticky rules). */
typedef struct intake {
    tmpl_op op;
    const schema_class *c;
    const attr_list *obj;
    bool so;
} intake;

static bool may_give(const intake *in, const schema_row *row)
{
    switch (in->op) {
    case TMPL_SET:
        return row->flags & F_MODIFY;
    case TMPL_COPY: /* sec. 5.7.3: modifiable ones plus TOKEN/PRIVATE/MODIFIABLE */
        return row->flags & (F_MODIFY | F_COPY);
    default:
        return !(row->flags & NOT_IN_OP[in->op]);
    }
}

/* Key value and length against the key type (sec. 6.x tables). */
static CK_RV value_rule(const intake *in, const CK_ATTRIBUTE *a)
{
    if (in->c->value_max == 0)
        return CKR_OK;
    if (a->type == CKA_VALUE)
        ENSURE(schema_value_len_ok(in->c, a->ulValueLen), CKR_ATTRIBUTE_VALUE_INVALID);
    if (a->type == CKA_VALUE_LEN) {
        CK_ULONG len;
        memcpy(&len, a->pValue, sizeof(len));
        ENSURE(schema_value_len_ok(in->c, len), CKR_ATTRIBUTE_VALUE_INVALID);
    }
    return CKR_OK;
}

/* Footnotes 10, 11, 12 against the object's current value; when making an
 * object there is none, and only footnote 10 applies. */
static CK_RV bool_rule(const intake *in, const schema_row *row, bool v)
{
    bool cur;
    bool has = in->obj != NULL && attr_get_bool(in->obj, row->type, &cur);
    if ((row->flags & F_SO_TRUE) && v && !in->so && !(has && cur))
        return CKR_ATTRIBUTE_READ_ONLY;
    if ((row->flags & F_STICKY_TRUE) && has && cur && !v)
        return CKR_ATTRIBUTE_READ_ONLY;
    if ((row->flags & F_STICKY_FALSE) && has && !cur && v)
        return CKR_ATTRIBUTE_READ_ONLY;
    return CKR_OK;
}

/* Check one template attribute and add it to `given` in stored form. The
 * same type twice must carry the same value (sec. 4.1.1). */
static CK_RV take_one(const intake *in, const CK_ATTRIBUTE *a, attr_list *given)
{
    CK_RV rv = CKR_OK;
    uint8_t *blob = NULL;
    size_t len = a->ulValueLen;
    const void *value = a->pValue;

    const schema_row *row = schema_row_find(in->c, a->type);
    ENSURE(row != NULL, CKR_ATTRIBUTE_TYPE_INVALID);
    ENSURE(may_give(in, row), CKR_ATTRIBUTE_READ_ONLY);
    ENSURE(schema_kind_valid(row->kind, a->pValue, a->ulValueLen), CKR_ATTRIBUTE_VALUE_INVALID);
    GUARD(value_rule(in, a));
    if (row->kind == KIND_BOOL)
        GUARD(bool_rule(in, row, *(const CK_BBOOL *)a->pValue == CK_TRUE));
    if (row->kind == KIND_ATTRS) {
        GUARD(attr_array_encode(a->pValue, a->ulValueLen / sizeof(CK_ATTRIBUTE), &blob, &len));
        value = blob;
    }

    const attr *prev = attr_find(given, a->type);
    ENSURE_OUT(prev == NULL || same_bytes(prev->value, prev->len, value, len),
               CKR_TEMPLATE_INCONSISTENT);
    GUARD_OUT(attr_set(given, a->type, value, len, (row->flags & F_SENSITIVE) ? ATTR_SECRET : 0));
out:
    free(blob);
    return rv;
}

static CK_RV take_template(const intake *in, const CK_ATTRIBUTE *t, CK_ULONG n, attr_list *given)
{
    CK_RV rv = CKR_OK;
    attr_list_init(given);
    for (CK_ULONG i = 0; i < n; i++)
        GUARD_OUT(take_one(in, &t[i], given));
out:
    if (rv != CKR_OK)
        attr_list_free(given);
    return rv;
}

/* ---- building a new object -------------------------------------------- */

/* One CK_ULONG attribute of the template (CKA_CLASS, CKA_KEY_TYPE), read
 * before the schema is known. */
static CK_RV template_ulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type,
                            CK_ULONG *v, bool *found)
{
    *found = false;
    for (CK_ULONG i = 0; i < n; i++) {
        if (t[i].type != type)
            continue;
        ENSURE(schema_kind_valid(KIND_ULONG, t[i].pValue, t[i].ulValueLen),
               CKR_ATTRIBUTE_VALUE_INVALID);
        CK_ULONG x;
        memcpy(&x, t[i].pValue, sizeof(x));
        ENSURE(!*found || x == *v, CKR_TEMPLATE_INCONSISTENT);
        *v = x;
        *found = true;
    }
    return CKR_OK;
}

/* A class or key type: from the mechanism (want) or the template. */
static CK_RV resolve(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_ULONG want,
                     CK_ULONG *v)
{
    bool found;
    GUARD(template_ulong(t, n, type, v, &found));
    if (want == CK_UNAVAILABLE_INFORMATION) {
        ENSURE(found, CKR_TEMPLATE_INCOMPLETE);
        return CKR_OK;
    }
    ENSURE(!found || *v == want, CKR_TEMPLATE_INCONSISTENT);
    *v = want;
    return CKR_OK;
}

typedef struct build {
    tmpl_op op;
    const schema_class *c;
    CK_MECHANISM_TYPE gen_mech;
    attr_list *l;
    size_t given;   /* fill_default: the entries of l before defaults */
} build;

static CK_RV require(const schema_row *row, void *ctx)
{
    const build *b = ctx;
    if ((row->flags & REQ_IN_OP[b->op]) && attr_find(b->l, row->type) == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    return CKR_OK;
}

/* A row's default when the list lacks its type. Each row has its own type,
 * so a default added here never meets a later row: only the entries there
 * before the first default need a look (a template's few, not the whole
 * growing list), and a default is appended without a second search. */
static CK_RV fill_default(const schema_row *row, void *ctx)
{
    const build *b = ctx;
    static const CK_BBOOL f = CK_FALSE, t = CK_TRUE;
    static const CK_ULONG zero = 0;
    attr_list given = { b->l->v, b->given, b->given };
    if (attr_find(&given, row->type) != NULL)
        return CKR_OK;
    switch (row->dflt) {
    case DFLT_FALSE:
        return attr_add_new(b->l, row->type, &f, sizeof(f), 0);
    case DFLT_TRUE:
        return attr_add_new(b->l, row->type, &t, sizeof(t), 0);
    case DFLT_EMPTY:
        return attr_add_new(b->l, row->type, NULL, 0, 0);
    case DFLT_ZERO:
        return attr_add_new(b->l, row->type, &zero, sizeof(zero), 0);
    case DFLT_NONE:
        break;
    }
    return CKR_OK;
}

/* Attributes the token derives (sec. 4.7, 4.10; C_UnwrapKey sets
 * CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE to FALSE). */
static CK_RV comp_local(build *b)
{
    return attr_set_bool(b->l, CKA_LOCAL, b->op == TMPL_GENERATE);
}

static CK_RV comp_gen_mech(build *b)
{
    return attr_set_ulong(b->l, CKA_KEY_GEN_MECHANISM,
                          b->op == TMPL_GENERATE ? b->gen_mech : CK_UNAVAILABLE_INFORMATION);
}

static CK_RV comp_always_sensitive(build *b)
{
    return attr_set_bool(b->l, CKA_ALWAYS_SENSITIVE,
                         b->op == TMPL_GENERATE && attr_bool(b->l, CKA_SENSITIVE, false));
}

static CK_RV comp_never_extractable(build *b)
{
    return attr_set_bool(b->l, CKA_NEVER_EXTRACTABLE,
                         b->op == TMPL_GENERATE && !attr_bool(b->l, CKA_EXTRACTABLE, true));
}

/* CREATE: from the value (a CKA_VALUE_LEN the caller gave must agree);
 * GENERATE: the one size of a fixed-size key type when not given;
 * UNWRAP: set with the value (schema_set_value). */
static CK_RV comp_value_len(build *b)
{
    CK_ULONG len;
    bool given = attr_get_ulong(b->l, CKA_VALUE_LEN, &len);
    if (b->c->value_max == 0)
        return CKR_OK;
    if (b->op == TMPL_CREATE) {
        const attr *v = attr_find(b->l, CKA_VALUE);
        ENSURE(v != NULL, CKR_TEMPLATE_INCOMPLETE);
        ENSURE(!given || len == v->len, CKR_TEMPLATE_INCONSISTENT);
        return attr_set_ulong(b->l, CKA_VALUE_LEN, v->len);
    }
    if (b->op == TMPL_GENERATE && !given && b->c->value_min == b->c->value_max)
        return attr_set_ulong(b->l, CKA_VALUE_LEN, b->c->value_min);
    return CKR_OK;
}

static const struct {
    CK_ATTRIBUTE_TYPE type;
    CK_RV (*fn)(build *b);
} COMPUTED[] = {
    { CKA_LOCAL, comp_local },
    { CKA_KEY_GEN_MECHANISM, comp_gen_mech },
    { CKA_ALWAYS_SENSITIVE, comp_always_sensitive },
    { CKA_NEVER_EXTRACTABLE, comp_never_extractable },
    { CKA_VALUE_LEN, comp_value_len },
};

CK_RV schema_build(tmpl_op op, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, CK_MECHANISM_TYPE gen_mech,
                   const CK_ATTRIBUTE *t, CK_ULONG n, attr_list *out)
{
    return schema_build_as(op, cls, kt, gen_mech, t, n, false, out);
}

CK_RV schema_build_as(tmpl_op op, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, CK_MECHANISM_TYPE gen_mech,
                      const CK_ATTRIBUTE *t, CK_ULONG n, bool so_session, attr_list *out)
{
    CK_RV rv = CKR_OK;
    attr_list l;
    attr_list_init(&l);
    attr_list_init(out);
    ENSURE(op == TMPL_CREATE || op == TMPL_GENERATE || op == TMPL_UNWRAP, CKR_ARGUMENTS_BAD);
    ENSURE(n == 0 || t != NULL, CKR_ARGUMENTS_BAD);

    /* Class and key type come together: from the mechanism or the template. */
    if (cls == CK_UNAVAILABLE_INFORMATION)
        kt = CK_UNAVAILABLE_INFORMATION;
    CK_ULONG c_cls, c_kt = CK_UNAVAILABLE_INFORMATION;
    GUARD(resolve(t, n, CKA_CLASS, cls, &c_cls));
    ENSURE(schema_class_known(c_cls), CKR_ATTRIBUTE_VALUE_INVALID);
    if (schema_class_keyed(c_cls))
        GUARD(resolve(t, n, CKA_KEY_TYPE, kt, &c_kt));
    const schema_class *c = schema_class_find(c_cls, c_kt);
    ENSURE(c != NULL, CKR_ATTRIBUTE_VALUE_INVALID);
    /* e.g. a data object from C_UnwrapKey */
    ENSURE(c->ops & OP_BIT(op), CKR_TEMPLATE_INCONSISTENT);

    intake in = { op, c, NULL, so_session };
    GUARD(take_template(&in, t, n, &l));
    GUARD_OUT(attr_set_ulong(&l, CKA_CLASS, c->cls));
    if (c->kt != CK_UNAVAILABLE_INFORMATION)
        GUARD_OUT(attr_set_ulong(&l, CKA_KEY_TYPE, c->kt));

    build b = { op, c, gen_mech, &l, 0 };
    GUARD_OUT(schema_each_row(c, require, &b));
    b.given = l.n;
    GUARD_OUT(schema_each_row(c, fill_default, &b));
    for (size_t i = 0; i < ARRAY_LEN(COMPUTED); i++)
        if (schema_row_find(c, COMPUTED[i].type) != NULL)
            GUARD_OUT(COMPUTED[i].fn(&b));

    *out = l;
    attr_list_init(&l);
out:
    attr_list_free(&l);
    return rv;
}

CK_RV schema_set_value(attr_list *obj, const uint8_t *value, size_t len)
{
    const schema_class *c = schema_class_of(obj);
    ENSURE(c != NULL && c->value_max > 0, CKR_TEMPLATE_INCONSISTENT);
    ENSURE(len == 0 || value != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(schema_value_len_ok(c, len), CKR_KEY_SIZE_RANGE);
    CK_ULONG want;
    if (attr_get_ulong(obj, CKA_VALUE_LEN, &want))
        ENSURE(want == len, CKR_TEMPLATE_INCONSISTENT);

    const schema_row *row = schema_row_find(c, CKA_VALUE);
    GUARD(attr_set(obj, CKA_VALUE, value, len, (row->flags & F_SENSITIVE) ? ATTR_SECRET : 0));
    if (schema_row_find(c, CKA_VALUE_LEN) != NULL)
        GUARD(attr_set_ulong(obj, CKA_VALUE_LEN, len));
    return CKR_OK;
}

/* ---- changing an object ----------------------------------------------- */

CK_RV schema_apply(tmpl_op op, const attr_list *obj, const CK_ATTRIBUTE *t, CK_ULONG n,
                   bool so_session, attr_list *out)
{
    CK_RV rv = CKR_OK;
    attr_list given, l;
    attr_list_init(&given);
    attr_list_init(&l);
    attr_list_init(out);
    ENSURE(op == TMPL_SET || op == TMPL_COPY, CKR_ARGUMENTS_BAD);
    ENSURE(n == 0 || t != NULL, CKR_ARGUMENTS_BAD);
    const schema_class *c = schema_class_of(obj);
    ENSURE(c != NULL, CKR_GENERAL_ERROR);
    /* sec. 4.4: CKA_MODIFIABLE guards C_SetAttributeValue, CKA_COPYABLE
     * guards C_CopyObject (a read-only object may still be copied). */
    if (op == TMPL_SET)
        ENSURE(attr_bool(obj, CKA_MODIFIABLE, true), CKR_ACTION_PROHIBITED);
    else
        ENSURE(attr_bool(obj, CKA_COPYABLE, true), CKR_ACTION_PROHIBITED);

    intake in = { op, c, obj, so_session };
    GUARD(take_template(&in, t, n, &given));
    GUARD_OUT(attr_list_copy(&l, obj));
    for (size_t i = 0; i < given.n; i++) {
        const attr *a = &given.v[i];
        GUARD_OUT(attr_set(&l, a->type, a->value, a->len, a->flags));
    }
    /* The copy is a new object: the core gives it its own identifier. */
    if (op == TMPL_COPY)
        attr_remove(&l, CKA_UNIQUE_ID);

    *out = l;
    attr_list_init(&l);
out:
    attr_list_free(&l);
    attr_list_free(&given);
    return rv;
}

/* ---- reading an object (sec. 5.7.5) ------------------------------------ */

/* Footnote 7: a secret attribute of a sensitive or unextractable key is
 * never revealed; nor is a value still sealed from the store. Absent
 * CKA_SENSITIVE / CKA_EXTRACTABLE count as the safe values. */
static bool hidden(const attr_list *obj, const schema_class *c, const attr *a)
{
    if (a->flags & ATTR_SEALED)
        return true;
    const schema_row *row = c != NULL ? schema_row_find(c, a->type) : NULL;
    bool secret = (a->flags & ATTR_SECRET) || (row != NULL && (row->flags & F_SENSITIVE));
    return secret &&
           (attr_bool(obj, CKA_SENSITIVE, true) || !attr_bool(obj, CKA_EXTRACTABLE, false));
}

/* An attribute array goes into the caller's CK_ATTRIBUTE array, member by
 * member: types are set, a NULL pValue receives the length, a short buffer
 * gets CK_UNAVAILABLE_INFORMATION and the call CKR_BUFFER_TOO_SMALL. */
static CK_RV get_array(const attr *a, CK_ATTRIBUTE *out)
{
    CK_RV rv = CKR_OK;
    size_t count = attr_array_count(a->value, a->len);
    if (a->len > 0 && count == 0) {
        out->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_GENERAL_ERROR;
    }
    CK_ULONG need = (CK_ULONG)(count * sizeof(CK_ATTRIBUTE));
    if (out->pValue == NULL) {
        out->ulValueLen = need;
        return CKR_OK;
    }
    if (out->ulValueLen < need) {
        out->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_BUFFER_TOO_SMALL;
    }
    CK_ATTRIBUTE *inner = out->pValue;
    size_t pos = 0;
    for (size_t k = 0; k < count; k++) {
        CK_ATTRIBUTE m;
        GUARD(attr_array_next(a->value, a->len, &pos, &m));
        inner[k].type = m.type;
        if (inner[k].pValue == NULL) {
            inner[k].ulValueLen = m.ulValueLen;
        } else if (inner[k].ulValueLen < m.ulValueLen) {
            inner[k].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            rv = CKR_BUFFER_TOO_SMALL;
        } else {
            if (m.ulValueLen > 0)
                memcpy(inner[k].pValue, m.pValue, m.ulValueLen);
            inner[k].ulValueLen = m.ulValueLen;
        }
    }
    out->ulValueLen = need;
    return rv;
}

static CK_RV get_one(const attr_list *obj, const schema_class *c, CK_ATTRIBUTE *t)
{
    const attr *a = attr_find(obj, t->type);
    if (a == NULL) {
        t->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    if (hidden(obj, c, a)) {
        t->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_ATTRIBUTE_SENSITIVE;
    }
    if ((a->type & CKF_ARRAY_ATTRIBUTE) && schema_kind(a->type) == KIND_ATTRS)
        return get_array(a, t);
    if (t->pValue == NULL) {
        t->ulValueLen = (CK_ULONG)a->len;
        return CKR_OK;
    }
    if (t->ulValueLen < a->len) {
        t->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (a->len > 0)
        memcpy(t->pValue, a->value, a->len);
    t->ulValueLen = (CK_ULONG)a->len;
    return CKR_OK;
}

CK_RV schema_get(const attr_list *obj, CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_RV rv = CKR_OK;
    ENSURE(n == 0 || t != NULL, CKR_ARGUMENTS_BAD);
    const schema_class *c = schema_class_of(obj);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_RV r = get_one(obj, c, &t[i]);
        if (rv == CKR_OK)
            rv = r;
    }
    return rv;
}

/* ---- wrap / unwrap templates (sec. 4.10) ------------------------------- */

bool schema_array_satisfied(const attr *array_attr, const attr_list *l)
{
    if (array_attr == NULL || array_attr->len == 0)
        return true;
    if (array_attr->flags & ATTR_SEALED)
        return false;
    for (size_t pos = 0; pos < array_attr->len;) {
        CK_ATTRIBUTE m;
        if (attr_array_next(array_attr->value, array_attr->len, &pos, &m) != CKR_OK)
            return false;
        if (!attr_match(l, &m, 1))
            return false;
    }
    return true;
}

CK_RV schema_merge_unwrap_template(const attr *unwrap_tmpl, const CK_ATTRIBUTE *t, CK_ULONG n,
                                   CK_ATTRIBUTE **out, CK_ULONG *outn)
{
    CK_RV rv = CKR_OK;
    const uint8_t *blob = unwrap_tmpl != NULL ? unwrap_tmpl->value : NULL;
    size_t len = unwrap_tmpl != NULL ? unwrap_tmpl->len : 0;
    CK_ATTRIBUTE *m = NULL;
    *out = NULL;
    *outn = 0;
    ENSURE(n == 0 || t != NULL, CKR_ARGUMENTS_BAD);
    for (CK_ULONG i = 0; i < n; i++)
        ENSURE(t[i].ulValueLen == 0 || t[i].pValue != NULL, CKR_ATTRIBUTE_VALUE_INVALID);
    size_t count = attr_array_count(blob, len);
    ENSURE(len == 0 || count > 0, CKR_GENERAL_ERROR);
    if (n + count == 0)
        return CKR_OK;
    ENSURE(n <= SIZE_MAX / sizeof(*m) - count, CKR_HOST_MEMORY);

    m = malloc((n + count) * sizeof(*m));
    ENSURE(m != NULL, CKR_HOST_MEMORY);
    if (n > 0)
        memcpy(m, t, n * sizeof(*m));
    CK_ULONG k = n;
    for (size_t pos = 0; pos < len;) {
        CK_ATTRIBUTE e;
        bool dup = false;
        GUARD_OUT(attr_array_next(blob, len, &pos, &e));
        for (CK_ULONG i = 0; i < n; i++) {
            if (t[i].type != e.type)
                continue;
            ENSURE_OUT(same_bytes(t[i].pValue, t[i].ulValueLen, e.pValue, e.ulValueLen),
                       CKR_TEMPLATE_INCONSISTENT);
            dup = true;
        }
        if (!dup)
            m[k++] = e;
    }
    *out = m;
    *outn = k;
    m = NULL;
out:
    free(m);
    return rv;
}
