/* envelope.h -- public API of the Custos envelope library: seal, open, inspect
 * and re-wrap envelopes (docs/envelope-format.md) through plain PKCS#11, so any
 * token works. Every cryptographic step is done by the token; no key ever
 * enters this process's memory, and no error text carries a secret. */
#ifndef CUSTOS_ENVELOPE_H
#define CUSTOS_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "pkcs11.h"

#define ENV_FORMAT_VERSION 1
#define ENV_AEAD_AES256_GCM 1          /* the default */
#define ENV_AEAD_XCHACHA20_POLY1305 2  /* needs CKM_CHACHA20_POLY1305 with 192-bit nonces */
#define ENV_CHUNK_SHIFT_DEFAULT 16     /* 64 KiB chunks */
#define ENV_CHUNK_SHIFT_MIN 10
#define ENV_CHUNK_SHIFT_MAX 20
#define ENV_CONTEXT_MAX 1024
#define ENV_FAMILY_MAX 255
#define ENV_WDEK_MIN 16
#define ENV_WDEK_MAX 512
#define ENV_TAG_LEN 16
#define ENV_HEADER_MAX 2048
#define ENV_TEXT_MAX ((size_t)64 << 20)
#define ENV_TEXT_PREFIX "cus1:"
#define ENV_DEK_TEXT_PREFIX "cusk1:"

/* Outcomes. ENV_OK is 0; every other value has a message (env_strerror) and
 * the context keeps a one-line detail (env_ctx_error). */
typedef enum env_rv {
    ENV_OK = 0,
    ENV_E_ARGS,          /* the library was called wrongly */
    ENV_E_NOMEM,
    ENV_E_TRUNCATED,     /* the input ends inside the header or a chunk */
    ENV_E_MAGIC,         /* not an envelope / DEK file */
    ENV_E_VERSION,       /* unknown format version */
    ENV_E_ALGORITHM,     /* unknown or unsupported AEAD or wrap mechanism */
    ENV_E_FIELD,         /* a field outside its range or character set */
    ENV_E_TRAILING,      /* bytes after the end of a DEK file */
    ENV_E_TEXT,          /* malformed text form */
    ENV_E_CONTEXT,       /* the stored context is not the expected one */
    ENV_E_KEY_NOT_FOUND, /* no KEK with that family and version */
    ENV_E_KEY_AMBIGUOUS, /* several KEKs answer to that name */
    ENV_E_KEY_MISMATCH,  /* the given KEK is not the one the header names */
    ENV_E_UNWRAP,        /* the token could not unwrap the DEK */
    ENV_E_HEADER_AUTH,   /* the key-block tag did not verify */
    ENV_E_CHUNK_AUTH,    /* a chunk did not verify: nothing of it released */
    ENV_E_TOO_LARGE,     /* more than 2^32 chunks */
    ENV_E_MECHANISM,     /* the token offers no usable wrap mechanism */
    ENV_E_TOKEN,         /* another PKCS#11 call failed */
    ENV_E_IO,            /* the output sink or a stream failed */
    ENV_E_STATE,         /* the reader/writer already failed or finished */
} env_rv;

/* Where output goes: return 0 on success, anything else aborts with ENV_E_IO. */
typedef int (*env_sink)(void *arg, const uint8_t *data, size_t len);

typedef struct env_ctx env_ctx;
typedef struct env_writer env_writer;
typedef struct env_reader env_reader;

/* What the header says; never a key, a nonce or the wrapped DEK's bytes. */
typedef struct env_info {
    int is_dek_file;            /* a DEK file rather than an envelope */
    unsigned format_version;
    unsigned aead;              /* ENV_AEAD_*; for a DEK file, the AEAD its key is for */
    const char *aead_name;
    size_t chunk_size;          /* plaintext bytes per chunk */
    char context[ENV_CONTEXT_MAX + 1];
    size_t context_len;
    char family[ENV_FAMILY_MAX + 1];
    unsigned long kek_version;  /* 0: unknown */
    CK_MECHANISM_TYPE wrap_mech;
    const char *wrap_name;
    size_t wrapped_dek_len;
    size_t header_len;          /* bytes before the first chunk */
} env_info;

const char *env_strerror(env_rv rv);

/* ---- context -------------------------------------------------------------
 * One per session in use. `kek` is the KEK new envelopes are sealed (and
 * re-wraps are wrapped) under; CK_INVALID_HANDLE when only opening. When it is
 * set, opening checks the header names this very key. The session must be
 * logged in where the token requires it; the context borrows it. */
env_rv env_ctx_new(CK_FUNCTION_LIST_PTR p11, CK_SESSION_HANDLE session,
                   CK_OBJECT_HANDLE kek, env_ctx **out);
void env_ctx_free(env_ctx *ctx);
void env_ctx_set_kek(env_ctx *ctx, CK_OBJECT_HANDLE kek);
/* Chunk size for new envelopes, as log2 bytes (ENV_CHUNK_SHIFT_MIN..MAX). */
env_rv env_ctx_set_chunk_shift(env_ctx *ctx, unsigned shift);
/* The AEAD of new envelopes and DEK files: ENV_AEAD_AES256_GCM (the default)
 * or ENV_AEAD_XCHACHA20_POLY1305 (else ENV_E_ALGORITHM). Sealing with a DEK
 * file uses the DEK file's AEAD; once this is called, a DEK file for another
 * AEAD is refused (ENV_E_ALGORITHM). A token that does not list the
 * mechanisms gets ENV_E_MECHANISM at seal or open, never AES instead. */
env_rv env_ctx_set_aead(env_ctx *ctx, unsigned aead);
/* "aes-256-gcm" or "xchacha20-poly1305" (any case) to ENV_AEAD_*;
 * ENV_E_ALGORITHM for any other name. */
env_rv env_aead_from_name(const char *name, unsigned *aead);
/* ENV_AEAD_* to its display name ("AES-256-GCM", "XChaCha20-Poly1305",
 * "unknown"). */
const char *env_aead_name(unsigned aead);
/* The last failure as one line, e.g. "chunk 3 failed authentication ...". */
const char *env_ctx_error(const env_ctx *ctx);
/* The last PKCS#11 return value that failed (CKR_OK if none). */
CK_RV env_ctx_last_ckr(const env_ctx *ctx);
const char *env_ckr_name(CK_RV rv);

/* ---- keys ------------------------------------------------------------------ */
/* The current KEK of a family: secret keys whose CKA_CUSTOS_FAMILY (or, on
 * tokens without it, CKA_LABEL) is `label`; the highest CKA_CUSTOS_VERSION wins. */
env_rv env_find_key_by_label(env_ctx *ctx, const char *label, CK_OBJECT_HANDLE *out);
/* The KEK with that family and version (version 0: the only key of that name). */
env_rv env_find_kek(env_ctx *ctx, const char *family, unsigned long version,
                    CK_OBJECT_HANDLE *out);
/* A key's family (NUL-terminated, <= ENV_FAMILY_MAX bytes) and version. */
env_rv env_key_identity(env_ctx *ctx, CK_OBJECT_HANDLE key,
                        char family[ENV_FAMILY_MAX + 1], unsigned long *version);

/* ---- streaming seal -------------------------------------------------------
 * `context` is the caller's AAD string (stored in clear, bound to every chunk).
 * `dek`/`dek_len`: a DEK file from env_dek_new to reuse, or NULL for a fresh
 * DEK. The header goes to the sink at begin; final writes the last chunk.
 * env_seal_final and env_seal_abort always free the writer. */
env_rv env_seal_begin(env_ctx *ctx, const char *context, const uint8_t *dek,
                      size_t dek_len, env_sink sink, void *arg, env_writer **out);
env_rv env_seal_update(env_writer *w, const void *data, size_t len);
env_rv env_seal_final(env_writer *w);
void env_seal_abort(env_writer *w);

/* ---- streaming open ---------------------------------------------------------
 * `expected_context`: the context the caller expects (NULL accepts the stored
 * one: it is still authenticated). Only verified chunks reach the sink; the
 * last chunk is released by env_open_final. A stream that ends early fails at
 * final. env_open_final and env_open_abort always free the reader. */
env_rv env_open_begin(env_ctx *ctx, const char *expected_context, env_sink sink,
                      void *arg, env_reader **out);
env_rv env_open_update(env_reader *r, const void *data, size_t len);
env_rv env_open_final(env_reader *r);
void env_open_abort(env_reader *r);

/* ---- one-shot helpers (records in memory; free results with env_free) ---- */
env_rv env_seal_buf(env_ctx *ctx, const char *context, const uint8_t *dek,
                    size_t dek_len, const void *pt, size_t pt_len,
                    uint8_t **out, size_t *out_len);
env_rv env_open_buf(env_ctx *ctx, const char *expected_context, const uint8_t *env,
                    size_t env_len, uint8_t **pt, size_t *pt_len);
/* Wipe and free a buffer this library returned. */
void env_free(void *p, size_t len);
/* Files: the reader releases only verified chunks to `out`. */
env_rv env_seal_file(env_ctx *ctx, const char *context, const uint8_t *dek,
                     size_t dek_len, FILE *in, FILE *out);
env_rv env_open_file(env_ctx *ctx, const char *expected_context, FILE *in, FILE *out);
int env_sink_file(void *file, const uint8_t *data, size_t len);

/* ---- text form ------------------------------------------------------------ */
/* Binary envelope -> "cus1:..." and DEK file -> "cusk1:..." (NUL-terminated). */
env_rv env_to_text(const uint8_t *bin, size_t len, char **text);
/* Strict decoder of either prefix; the decoded magic must match the prefix. */
env_rv env_from_text(const char *text, size_t len, uint8_t **bin, size_t *bin_len);

/* ---- header only ------------------------------------------------------------ */
/* Parse an envelope header (body may follow) or a whole DEK file. No token call. */
env_rv env_inspect(const uint8_t *data, size_t len, env_info *info);

/* ---- DEKs and re-wrap --------------------------------------------------------
 * A fresh DEK wrapped under the context's KEK, as a DEK file. */
env_rv env_dek_new(env_ctx *ctx, uint8_t **dek, size_t *dek_len);
/* Re-wrap the DEK of an envelope under the context's KEK, inside the token.
 * `old_kek`: CK_INVALID_HANDLE to find it from the header. `env` needs only
 * the header; the result is the new header, and *old_header_len says how many
 * bytes of the old envelope it replaces (the body is copied unchanged). */
env_rv env_rewrap(env_ctx *ctx, CK_OBJECT_HANDLE old_kek, const uint8_t *env,
                  size_t env_len, uint8_t **new_header, size_t *new_header_len,
                  size_t *old_header_len);
/* The same for a whole envelope in memory: returns the new envelope. */
env_rv env_rewrap_buf(env_ctx *ctx, CK_OBJECT_HANDLE old_kek, const uint8_t *env,
                      size_t env_len, uint8_t **out, size_t *out_len);
/* The same for a DEK file. */
env_rv env_dek_rewrap(env_ctx *ctx, CK_OBJECT_HANDLE old_kek, const uint8_t *dek,
                      size_t dek_len, uint8_t **out, size_t *out_len);

#endif
