/* internal.h -- what format.c and stream.c share: the parsed header, the key
 * block, the strict parser and encoder, and the wipe helper. Not installed. */
#ifndef CUSTOS_ENVELOPE_INTERNAL_H
#define CUSTOS_ENVELOPE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "envelope/envelope.h"
#include "util/be.h"
#include "util/guard.h"

#define ENV_MAGIC "CUSE"
#define ENV_DEK_MAGIC "CUSK"
#define ENV_MAGIC_LEN 4
#define ENV_NONCE_MAX 24
#define ENV_KB_NONCE_LEN 12
#define ENV_DIGEST_LEN 32
#define ENV_KB_LABEL "CUSE-kb1"
#define ENV_KB_LABEL_LEN 8
/* Chunk indices are 32-bit (sec. 6). */
#define ENV_CHUNK_INDEX_MAX 0xFFFFFFFFULL

/* Return the callee's env_rv unless it is ENV_OK (GUARD_OUT/ENSURE_OUT from
 * util/guard.h work unchanged with a local `env_rv rv`). */
#define ENV_GUARD(expr)                                                        \
    do {                                                                       \
        env_rv env_guard_rv_ = (expr);                                         \
        if (env_guard_rv_ != ENV_OK)                                           \
            return env_guard_rv_;                                              \
    } while (0)

/* The key block (docs/envelope-format.md sec. 2.2): public data, copied. */
typedef struct env_kb {
    uint8_t family[ENV_FAMILY_MAX];
    size_t fam_len;
    uint32_t kek_version;
    uint32_t wrap_mech;
    uint8_t wdek[ENV_WDEK_MAX];
    size_t wdek_len;
    uint8_t kb_nonce[ENV_KB_NONCE_LEN];
    uint8_t kb_tag[ENV_TAG_LEN];
    /* DEK files only (sec. 3): the AEAD the key is for; 0 or
     * ENV_AEAD_AES256_GCM (no byte stored) or ENV_AEAD_XCHACHA20_POLY1305. */
    uint8_t dek_aead;
} env_kb;

/* A parsed envelope header. nonce_base and context point into the parsed
 * buffer, which must outlive the struct. */
typedef struct env_hdr {
    uint8_t version;
    uint8_t aead;
    uint8_t chunk_shift;
    uint8_t flags;
    const uint8_t *nonce_base;
    size_t nonce_len;
    const uint8_t *context;
    size_t ctx_len;
    size_t data_len;    /* bytes of the data header: what D covers */
    env_kb kb;
    size_t header_len;  /* data header + key block */
} env_hdr;

/* Strict parsers. `field` (may be NULL) receives the name of the offending
 * field on failure. ENV_E_TRUNCATED means "more bytes needed". */
CUSTOS_WUR env_rv env_hdr_parse(const uint8_t *p, size_t n, env_hdr *h, const char **field);
CUSTOS_WUR env_rv env_dek_parse(const uint8_t *p, size_t n, env_kb *kb, const char **field);

/* The nonce length of an AEAD id, 0 if unknown. */
size_t env_aead_nonce_len(unsigned aead);
const char *env_wrap_name(CK_MECHANISM_TYPE mech);
bool env_wrap_known(CK_MECHANISM_TYPE mech);
/* Context and family bytes: no control characters (0x00..0x1F, 0x7F). */
bool env_text_field_ok(const uint8_t *p, size_t n);

/* Encoders: data header, key block, DEK file. Each writes at most `cap`
 * bytes and sets *len; the key block also sets *aad_len, the length of its
 * prefix that the key-block tag authenticates (everything before kb_nonce). */
CUSTOS_WUR env_rv env_data_hdr_encode(unsigned aead, unsigned shift, const uint8_t *nonce_base,
                                      const uint8_t *ctx, size_t ctx_len,
                                      uint8_t *out, size_t cap, size_t *len);
CUSTOS_WUR env_rv env_kb_encode(const env_kb *kb, uint8_t *out, size_t cap, size_t *len,
                                size_t *aad_len);
CUSTOS_WUR env_rv env_dek_encode(const env_kb *kb, uint8_t **out, size_t *len);

/* Body layout (sec. 2.3): the number of chunks of a body of `body_len` bytes,
 * or ENV_E_TRUNCATED (no chunk, or a piece of 1..15 bytes), ENV_E_FIELD (an
 * empty final chunk after index 0), ENV_E_TOO_LARGE (> 2^32 chunks). */
CUSTOS_WUR env_rv env_body_layout(uint64_t body_len, unsigned shift, uint64_t *nchunks);

/* base64url without padding (RFC 4648 sec. 5), strict. */
size_t env_b64_len(size_t n);
void env_b64_encode(const uint8_t *in, size_t n, char *out);
CUSTOS_WUR env_rv env_b64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len);

static inline void env_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        explicit_bzero(p, n);
}

#endif
