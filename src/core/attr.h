/* Attributes of an object in memory, and the attribute schema: one row per
 * attribute per object class / key type, kept as data (core/schema.c), through
 * which C_CreateObject, C_GenerateKey, C_UnwrapKey, C_CopyObject,
 * C_SetAttributeValue and C_GetAttributeValue all pass (core/template.c).
 * PKCS#11 3.2 sec. 4 (objects) and 5.7 (object management). */
#ifndef CUSTOS_CORE_ATTR_H
#define CUSTOS_CORE_ATTR_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "pkcs11.h"
#include "util/guard.h"

/* attr.flags */
#define ATTR_SECRET 0x1u /* value lives in secure memory (key bytes) */
#define ATTR_SEALED 0x2u /* value is a sealed blob from the store, not opened
                            yet (needs the master key: only after login) */

/* One attribute. Values are stored exactly as a client passes them
 * (CK_BBOOL one byte, CK_ULONG native 8 bytes, CK_DATE 8 chars); an
 * attribute array (CKF_ARRAY_ATTRIBUTE, e.g. CKA_UNWRAP_TEMPLATE) is kept
 * serialised (attr_array_encode) so that it can be stored and compared. */
typedef struct attr {
    CK_ATTRIBUTE_TYPE type;
    size_t len;
    uint8_t *value;  /* malloc'ed, or secmem when ATTR_SECRET; NULL iff len 0 */
    unsigned flags;
} attr;

typedef struct attr_list {
    attr *v;
    size_t n;
    size_t cap;
} attr_list;

/* ---- list helpers (core/attr.c) ------------------------------------- */
void attr_list_init(attr_list *l);
/* Frees every value (secmem ones wiped) and the array. */
void attr_list_free(attr_list *l);
attr *attr_find(const attr_list *l, CK_ATTRIBUTE_TYPE type);
/* Insert or replace; copies value (into secmem when flags has ATTR_SECRET).
 * CKR_HOST_MEMORY on exhaustion. */
CK_RV attr_set(attr_list *l, CK_ATTRIBUTE_TYPE type, const void *value,
               size_t len, unsigned flags) CUSTOS_WUR;
/* Append, for a caller that knows type is not in l yet (no search). */
CK_RV attr_add_new(attr_list *l, CK_ATTRIBUTE_TYPE type, const void *value,
                   size_t len, unsigned flags) CUSTOS_WUR;
CK_RV attr_set_bool(attr_list *l, CK_ATTRIBUTE_TYPE type, bool v) CUSTOS_WUR;
CK_RV attr_set_ulong(attr_list *l, CK_ATTRIBUTE_TYPE type, CK_ULONG v) CUSTOS_WUR;
void attr_remove(attr_list *l, CK_ATTRIBUTE_TYPE type);
/* Deep copy. */
CK_RV attr_list_copy(attr_list *dst, const attr_list *src) CUSTOS_WUR;
/* Typed reads; false when absent or of the wrong size. */
bool attr_get_bool(const attr_list *l, CK_ATTRIBUTE_TYPE type, bool *v);
bool attr_get_ulong(const attr_list *l, CK_ATTRIBUTE_TYPE type, CK_ULONG *v);
/* attr_get_bool with a default when absent. */
bool attr_bool(const attr_list *l, CK_ATTRIBUTE_TYPE type, bool dflt);

/* Serialise / parse an attribute array value (CK_ATTRIBUTE[] whose members
 * point at their values) to a flat, self-contained blob:
 * repeated { type (8 bytes LE), len (8 bytes LE), value }; an empty array
 * gives *out NULL, *outlen 0. Refused with CKR_ATTRIBUTE_VALUE_INVALID:
 * nested arrays (members whose schema kind is an attribute array: the
 * CKF_ARRAY_ATTRIBUTE bit alone does not say so, CKA_ALLOWED_MECHANISMS and
 * the CKA_CUSTOS_* types carry it too), a member whose value is malformed
 * for its type (a CK_BBOOL not 0/1, ...), pValue NULL with ulValueLen > 0,
 * and the same type twice. The blob is malloc'ed: free(). */
CK_RV attr_array_encode(const CK_ATTRIBUTE *t, CK_ULONG n, uint8_t **out,
                        size_t *outlen) CUSTOS_WUR;
/* Decode into an attr_list (initialised here; on failure left empty).
 * CKR_ATTRIBUTE_VALUE_INVALID on a bad blob or a type twice. */
CK_RV attr_array_decode(const uint8_t *blob, size_t len, attr_list *out) CUSTOS_WUR;

/* Does the object (l) have every attribute of template t with identical
 * bytes? Attributes flagged ATTR_SEALED never match; ATTR_SECRET values are
 * compared in constant time; an attribute-array value in t is encoded
 * (attr_array_encode) before it is compared with the stored blob. */
bool attr_match(const attr_list *l, const CK_ATTRIBUTE *t, CK_ULONG n);

/* ---- the schema (core/schema.c) and its rules (core/template.c) ------ */
typedef enum tmpl_op {
    TMPL_CREATE,   /* C_CreateObject */
    TMPL_GENERATE, /* C_GenerateKey (the value is made by the token) */
    TMPL_UNWRAP,   /* C_UnwrapKey (the value comes from unwrapping) */
    TMPL_COPY,     /* C_CopyObject */
    TMPL_SET,      /* C_SetAttributeValue */
} tmpl_op;

/* Is this attribute secret for this object (sealed at rest, only ever in
 * secure memory): CKA_VALUE of secret keys, private key components. */
bool schema_is_secret(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type);
/* Is the type an attribute the object's class/key type has at all? */
bool schema_knows(const attr_list *obj, CK_ATTRIBUTE_TYPE type);

/* Build the complete attribute list of a new object (CREATE, GENERATE,
 * UNWRAP) from the caller's template:
 *  - the class (and key type) come from the template, or for GENERATE from
 *    `cls`/`kt` given by the mechanism (a template value that disagrees:
 *    CKR_TEMPLATE_INCONSISTENT); pass cls = CK_UNAVAILABLE_INFORMATION when
 *    the template must carry them (CREATE, UNWRAP: missing ->
 *    CKR_TEMPLATE_INCOMPLETE; kt is then ignored too);
 *  - every attribute is checked against the schema row: unknown for the
 *    class -> CKR_ATTRIBUTE_TYPE_INVALID; not settable in this op ->
 *    CKR_ATTRIBUTE_READ_ONLY; bad length or value (e.g. a CK_BBOOL not 0/1,
 *    a CK_ULONG of the wrong size, CKA_VALUE_LEN out of range for AES:
 *    16/24/32) -> CKR_ATTRIBUTE_VALUE_INVALID; the same type twice with
 *    different values -> CKR_TEMPLATE_INCONSISTENT; a required attribute
 *    missing (CKA_VALUE for CREATE of a secret key, CKA_VALUE_LEN for
 *    GENERATE of AES/generic secret) -> CKR_TEMPLATE_INCOMPLETE;
 *    CKA_VALUE in a GENERATE or UNWRAP template -> CKR_ATTRIBUTE_READ_ONLY;
 *    CKA_VALUE_LEN at CREATE is accepted when it equals the length of
 *    CKA_VALUE (else CKR_TEMPLATE_INCONSISTENT; the standard says "must not
 *    be specified"), at UNWRAP it is kept for schema_set_value, at GENERATE
 *    of a fixed-size key type (ChaCha20) it may be left out;
 *    a class or key type Custos does not support ->
 *    CKR_ATTRIBUTE_VALUE_INVALID; a class that cannot be made this way
 *    (a data object from GENERATE/UNWRAP) -> CKR_TEMPLATE_INCONSISTENT;
 *    CKA_TRUSTED true -> CKR_ATTRIBUTE_READ_ONLY (use schema_build_as with
 *    so_session for the SO);
 *  - defaults are filled (CKA_TOKEN false, CKA_PRIVATE true for keys and
 *    false for data objects, CKA_MODIFIABLE/COPYABLE/DESTROYABLE true,
 *    CKA_SENSITIVE true, CKA_EXTRACTABLE false: Custos's safe defaults,
 *    documented in docs/objects.md, usage flags false, CKA_LABEL/CKA_ID
 *    empty ...);
 *  - token-set attributes are computed: CKA_LOCAL (true only for GENERATE),
 *    CKA_KEY_GEN_MECHANISM (gen_mech for GENERATE, else
 *    CK_UNAVAILABLE_INFORMATION), CKA_ALWAYS_SENSITIVE (= CKA_SENSITIVE for
 *    GENERATE, false otherwise), CKA_NEVER_EXTRACTABLE (= !CKA_EXTRACTABLE
 *    for GENERATE, false otherwise), CKA_VALUE_LEN from the value for
 *    CREATE of secret keys (for UNWRAP: schema_set_value).
 * For UNWRAP/GENERATE the caller adds CKA_VALUE afterwards (schema_set_value)
 * and the core adds CKA_UNIQUE_ID.
 * *out is overwritten (not freed first); on failure it is left empty. */
CK_RV schema_build(tmpl_op op, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt,
                   CK_MECHANISM_TYPE gen_mech, const CK_ATTRIBUTE *t,
                   CK_ULONG n, attr_list *out) CUSTOS_WUR;
/* schema_build for a session of the given kind: with so_session true the
 * template may set CKA_TRUSTED to true (PKCS#11 3.2 sec. 4.10, footnote
 * 10). schema_build is schema_build_as(..., false, out). */
CK_RV schema_build_as(tmpl_op op, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt,
                      CK_MECHANISM_TYPE gen_mech, const CK_ATTRIBUTE *t,
                      CK_ULONG n, bool so_session, attr_list *out) CUSTOS_WUR;

/* Put the key value of a GENERATE/UNWRAP object in place (secure memory),
 * checking its length against the key type (CKR_WRAPPED_KEY_LEN_RANGE-free:
 * returns CKR_KEY_SIZE_RANGE, the caller maps) and CKA_VALUE_LEN if the
 * template gave one (mismatch: CKR_TEMPLATE_INCONSISTENT). */
CK_RV schema_set_value(attr_list *obj, const uint8_t *value, size_t len) CUSTOS_WUR;

/* Apply a C_SetAttributeValue (TMPL_SET) or C_CopyObject (TMPL_COPY)
 * template to a copy of obj, into *out (overwritten; filled on success,
 * left empty on failure; obj untouched):
 * CKA_MODIFIABLE false -> CKR_ACTION_PROHIBITED (SET only: a read-only
 * object may still be copied);
 * CKA_COPYABLE false -> CKR_ACTION_PROHIBITED (COPY only);
 * attribute not modifiable -> CKR_ATTRIBUTE_READ_ONLY. Modifiable (sec. 4
 * footnote 8): CKA_LABEL, CKA_COPYABLE, CKA_ID, CKA_START_DATE,
 * CKA_END_DATE, CKA_DERIVE, the usage flags, CKA_SENSITIVE, CKA_EXTRACTABLE,
 * CKA_WRAP_WITH_TRUSTED, CKA_TRUSTED and the settable CKA_CUSTOS_*; COPY
 * may in addition change CKA_TOKEN, CKA_PRIVATE and CKA_MODIFIABLE (sec.
 * 4.4, 5.7: not CKA_DESTROYABLE). Sticky rules: CKA_SENSITIVE only
 * false->true, CKA_EXTRACTABLE only true->false, CKA_WRAP_WITH_TRUSTED only
 * false->true, CKA_COPYABLE only true->false -> CKR_ATTRIBUTE_READ_ONLY;
 * unknown -> CKR_ATTRIBUTE_TYPE_INVALID; bad value ->
 * CKR_ATTRIBUTE_VALUE_INVALID; the same type twice with different values ->
 * CKR_TEMPLATE_INCONSISTENT. CKA_TRUSTED may be set to true only by the SO
 * (so_session; else CKR_ATTRIBUTE_READ_ONLY). COPY drops CKA_UNIQUE_ID
 * from the result: the core gives the copy its own. */
CK_RV schema_apply(tmpl_op op, const attr_list *obj, const CK_ATTRIBUTE *t,
                   CK_ULONG n, bool so_session, attr_list *out) CUSTOS_WUR;

/* C_GetAttributeValue over obj, attribute by attribute, exactly as PKCS#11
 * 3.2 sec. 5.7.5 states: unknown or absent -> ulValueLen =
 * CK_UNAVAILABLE_INFORMATION, CKR_ATTRIBUTE_TYPE_INVALID; a secret attribute
 * of a key that is CKA_SENSITIVE or not CKA_EXTRACTABLE (or still sealed) ->
 * CK_UNAVAILABLE_INFORMATION, CKR_ATTRIBUTE_SENSITIVE; pValue NULL -> the
 * length; too small -> CK_UNAVAILABLE_INFORMATION, CKR_BUFFER_TOO_SMALL;
 * attribute arrays are returned into the caller's CK_ATTRIBUTE array by the
 * same rules (inner types are set; an inner pValue NULL receives the
 * length; a short inner buffer gets CK_UNAVAILABLE_INFORMATION and
 * CKR_BUFFER_TOO_SMALL). Every attribute is processed; the return is CKR_OK
 * or the code of the first attribute that failed. */
CK_RV schema_get(const attr_list *obj, CK_ATTRIBUTE *t, CK_ULONG n);

/* Check a template against an attribute-array attribute (e.g. the key's
 * CKA_WRAP_TEMPLATE, the unwrapping key's CKA_UNWRAP_TEMPLATE): true when
 * every attribute of the array is present in l with the same value (as
 * attr_match). NULL or empty array: true; malformed or sealed: false. */
bool schema_array_satisfied(const attr *array_attr, const attr_list *l);
/* Merge an unwrapping key's CKA_UNWRAP_TEMPLATE into a caller template for
 * C_UnwrapKey: the result (malloc'ed CK_ATTRIBUTE array pointing into both
 * inputs; free() only the array) has every caller attribute plus the
 * template's (one entry where both give the same value); a conflicting
 * value -> CKR_TEMPLATE_INCONSISTENT; unwrap_tmpl NULL or empty: a copy of
 * t. Nothing to merge: *out NULL, *outn 0. */
CK_RV schema_merge_unwrap_template(const attr *unwrap_tmpl, const CK_ATTRIBUTE *t,
                                   CK_ULONG n, CK_ATTRIBUTE **out,
                                   CK_ULONG *outn) CUSTOS_WUR;

#endif
