/* Shared between the files of the audit unit only: the audit_log object,
 * the record encodings (record.c), the chain (chain.c), the write path and
 * syslog sink (log.c) and the alert counters (alert.c). */
#ifndef CUSTOS_AUDIT_INTERNAL_H
#define CUSTOS_AUDIT_INTERNAL_H

#include <pthread.h>
#include "audit/audit.h"
#include "crypto/crypto.h"
#include "store/audit_db.h"

#define AUDIT_KEY_LEN 32
#define AUDIT_KEY_META "audit_key"
/* Token meta key: wall time (8 bytes big-endian, microseconds) of the last
 * `custos audit clear-alerts`, so every process learns of it. */
#define AUDIT_CLEARED_META "audit_alerts_cleared"
#define AUDIT_HEAD_LABEL "custos-audit-head-v1"
/* The outbox is drained within flush_ms of a record, or at once when this
 * many of this process's records wait there; one drain takes at most
 * OUTBOX_TAKE rows (one audit file transaction). The audit file's meta
 * key OUTBOX_NOTE holds the id (8 bytes big-endian) and the SHA-256 of the
 * last outbox row it took. */
#define OUTBOX_BATCH 256
#define OUTBOX_TAKE 1024
#define OUTBOX_NOTE "outbox_taken"
/* The longest JSON line of one record (every field at its maximum, every
 * byte escaped as \u00XX) fits in this. */
#define AUDIT_JSON_MAX 8192

/* Who writes: read once at audit_open. */
typedef struct audit_ctx {
    char host[256];
    char os_user[64];
    int64_t pid;
    char process[32];
} audit_ctx;

/* ---- record.c -------------------------------------------------------------- */
int64_t audit_now_us(void);
/* Copy a C string, truncated to cap - 1 bytes, never splitting a UTF-8
 * sequence; NULL copies as "". */
void audit_copy_str(char *dst, size_t cap, const char *src);
/* "CKR_OK", ... or "0x%08lx" for a code without a name. */
void audit_rv_name(CK_RV rv, char *out, size_t cap);
/* Fill every column but seq, prev_mac and mac. */
void audit_row_from_event(audit_row *r, const audit_ctx *c, const audit_event *e, int64_t now_us);
/* The bytes the chain MAC covers (docs/audit.md, "The chain"): returns the
 * length, or 0 when cap is too small. */
size_t audit_canonical(const audit_row *r, uint8_t *out, size_t cap);
#define AUDIT_CANONICAL_MAX 2048
/* One JSON object and a newline into out (AUDIT_JSON_MAX bytes); returns
 * the length. */
size_t audit_row_json(const audit_row *r, char *out, size_t cap);
/* RFC 3339 UTC with microseconds: "2024-05-01T12:00:00.123456Z". */
void audit_format_time(int64_t us, char out[32]);

/* ---- chain.c ---------------------------------------------------------------- */
/* audit_db_seal_fn: ctx is the crypto_hmac keyed with the audit key. */
CK_RV audit_chain_seal(void *ctx, audit_row *r) CUSTOS_WUR;
CK_RV audit_chain_head_tag(crypto_hmac *h, int64_t seq, const uint8_t mac[AUDIT_MAC_LEN],
                           uint8_t tag[AUDIT_MAC_LEN]) CUSTOS_WUR;
/* The audit file beside a token file: "X.db" -> "X.audit.db" (malloc'ed). */
char *audit_path_for(const char *token_path);

/* ---- log.c ------------------------------------------------------------------- */
/* One aggregate: the event it sums (strings copied, function and user in
 * the arrays here; the event's pointers are not kept) and its counts. */
typedef struct agg_group {
    uint64_t hash;
    uint64_t born_ns;         /* CLOCK_MONOTONIC_COARSE */
    int64_t first_us, last_us;
    uint64_t count;
    audit_event ev;           /* ev.function, ev.user, ev.deny_reason: NULL */
    char function[48];
    char user[64];
} agg_group;

#define ALERT_BUCKETS 16
typedef struct alert_counter {
    struct alert_counter *next;
    uint64_t id;                         /* key handle, or hash of the user */
    char name[64];                       /* user name, or the key's label */
    uint32_t counts[ALERT_BUCKETS];
    int64_t slot_of[ALERT_BUCKETS];      /* bucket number each slot holds */
    int64_t last_bucket;
    int64_t tripped_until;               /* monotonic us; 0: not tripped */
    int64_t tripped_wall_us;
} alert_counter;

#define ALERT_TABLE 256
typedef struct alert_table {
    alert_counter *chain[ALERT_TABLE];
    size_t n;
} alert_table;

struct audit_log {
    audit_policy pol;
    store *st;                    /* the token's store, for the head */
    audit_db *db;
    audit_ctx ctx;
    uint8_t *key;                 /* AUDIT_KEY_LEN bytes of secure memory */

    /* write_mu: the hmac context, the staging rows, the audit_db appends of
     * this object. Taken before agg_mu when both are needed. */
    pthread_mutex_t write_mu;
    crypto_hmac *hmac;
    audit_row *staging;           /* rows of a flush; kept on failure */
    size_t n_staged, staging_cap;

    /* agg_mu: the aggregates (the hot path). */
    pthread_mutex_t agg_mu;
    agg_group *groups;
    size_t n_groups, groups_cap;
    uint32_t *slots;              /* open addressing: group index + 1 */
    size_t n_slots;               /* power of two, >= 2 * groups_cap */
    uint64_t deadline_ns;         /* atomic: when the oldest group is due */

    /* alert_mu: the counters. */
    pthread_mutex_t alert_mu;
    alert_table users, keys;
    size_t n_tripped;
    int64_t next_clear_check;     /* monotonic us */

    /* The outbox (docs/audit.md, "The outbox"): records of this process
     * put in the token's outbox and not yet seen drained (atomic; 1 at open
     * when another process left some). ob_rows: the rows of a drain
     * (write_mu). */
    uint64_t ob_pending;
    audit_row *ob_rows;
    size_t ob_cap;

    CK_RV fail_rv;                /* atomic: result of the last write */
    char *line;                   /* AUDIT_JSON_MAX, the mirror's (write_mu) */

    pthread_mutex_t syslog_mu;
    int syslog_fd;                /* -1 until first use */

    audit_log *forgotten;         /* list of logs dropped after fork */
};

/* Append rows (every column but seq and the MACs filled) as one chained
 * transaction, after whatever the token's outbox holds when this process
 * has records pending there (n may be 0), advance the head in the token,
 * mirror to syslog. The caller holds a->write_mu. */
CK_RV audit_write_locked(audit_log *a, audit_row *rows, size_t n) CUSTOS_WUR;
/* Send one message to the local syslog socket as "custos", facility
 * authpriv, at this priority (LOG_INFO, LOG_WARNING). Best effort. */
void audit_syslog(audit_log *a, int priority, const char *msg);
/* For tests: send syslog datagrams to this socket instead of /dev/log. */
void audit_syslog_set_path(const char *path);

/* ---- alert.c --------------------------------------------------------------- */
void audit_alerts_free(audit_log *a);

#endif
