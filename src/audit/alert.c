/* Decrypt-rate alerts (docs/audit.md, "Decrypt-rate alerts"): per token user
 * and per key, a sliding window of ALERT_BUCKETS buckets; crossing a
 * threshold writes one alert record and a syslog warning, and under
 * `action = deny` refuses until the window has passed or an admin clears
 * the alerts (in any process: the clearing time is kept in the token). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include "audit/internal.h"
#include "util/be.h"

/* Tracked users or keys per table; past it, idle ones are dropped. */
#define ALERT_MAX 16384
#define CLEAR_CHECK_US 1000000

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static void table_free(alert_table *t)
{
    for (size_t i = 0; i < ALERT_TABLE; i++) {
        alert_counter *c = t->chain[i];
        while (c != NULL) {
            alert_counter *next = c->next;
            free(c);
            c = next;
        }
        t->chain[i] = NULL;
    }
    t->n = 0;
}

void audit_alerts_free(audit_log *a)
{
    table_free(&a->users);
    table_free(&a->keys);
    a->n_tripped = 0;
}

/* Drop counters that are neither tripped nor counted within the window. */
static void sweep(alert_table *t, int64_t bucket)
{
    for (size_t i = 0; i < ALERT_TABLE; i++) {
        for (alert_counter **pp = &t->chain[i]; *pp != NULL;) {
            alert_counter *c = *pp;
            if (c->tripped_until == 0 && c->last_bucket <= bucket - ALERT_BUCKETS) {
                *pp = c->next;
                free(c);
                t->n--;
            } else {
                pp = &c->next;
            }
        }
    }
}

/* The counter of (id, name), made on first sight; NULL when the table is
 * full of active counters or memory is out. For users name identifies
 * (id is its hash); for keys id does (name is the label, for messages). */
static alert_counter *counter(alert_table *t, uint64_t id, const char *name, bool by_name,
                              int64_t bucket)
{
    alert_counter **head = &t->chain[id % ALERT_TABLE];
    for (alert_counter *c = *head; c != NULL; c = c->next)
        if (c->id == id && (!by_name || strncmp(c->name, name, sizeof(c->name) - 1) == 0))
            return c;
    if (t->n >= ALERT_MAX)
        sweep(t, bucket);
    if (t->n >= ALERT_MAX)
        return NULL;
    alert_counter *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->id = id;
    audit_copy_str(c->name, sizeof(c->name), name);
    for (size_t i = 0; i < ALERT_BUCKETS; i++)
        c->slot_of[i] = INT64_MIN;
    c->next = *head;
    *head = c;
    t->n++;
    return c;
}

static void reset(audit_log *a, alert_counter *c)
{
    if (c->tripped_until != 0)
        a->n_tripped--;
    c->tripped_until = 0;
    c->tripped_wall_us = 0;
    memset(c->counts, 0, sizeof(c->counts));
    for (size_t i = 0; i < ALERT_BUCKETS; i++)
        c->slot_of[i] = INT64_MIN;
}

typedef struct crossing {
    bool crossed;
    char msg[160];
} crossing;

/* Count one decrypt on c; true when it must be refused. A crossing is
 * described in *x for the caller to record outside the lock. */
static bool tick(audit_log *a, alert_counter *c, unsigned long threshold, int64_t now,
                 int64_t wall, const char *what, crossing *x)
{
    int64_t window = (int64_t)a->pol.alert_window_s * 1000000;
    int64_t width = window / ALERT_BUCKETS, bucket = now / width;
    size_t slot = (size_t)(bucket % ALERT_BUCKETS);
    uint64_t total = 0;

    if (c->tripped_until != 0) {
        if (now < c->tripped_until) {
            if (a->pol.alert_deny)
                return true;
        } else if (a->pol.alert_deny) {
            reset(a, c); /* the window passed: start counting afresh */
        } else {
            c->tripped_until = 0;
            a->n_tripped--;
        }
    }
    if (c->slot_of[slot] != bucket) {
        c->slot_of[slot] = bucket;
        c->counts[slot] = 0;
    }
    if (c->counts[slot] < UINT32_MAX)
        c->counts[slot]++;
    c->last_bucket = bucket;
    for (size_t i = 0; i < ALERT_BUCKETS; i++)
        if (c->slot_of[i] > bucket - ALERT_BUCKETS)
            total += c->counts[i];
    if (total <= threshold || c->tripped_until != 0)
        return false;
    c->tripped_until = now + window;
    c->tripped_wall_us = wall;
    a->n_tripped++;
    x->crossed = true;
    snprintf(x->msg, sizeof(x->msg), "decrypt rate above %lu per %u s for %s", threshold,
             a->pol.alert_window_s, what);
    return a->pol.alert_deny;
}

/* alert_mu held. While something is refused, look (at most once a second)
 * whether an admin cleared the alerts from another process. */
static void check_cleared_locked(audit_log *a, int64_t now)
{
    uint8_t *v = NULL;
    size_t len = 0;
    int64_t cleared = 0;

    if (a->n_tripped == 0 || now < a->next_clear_check)
        return;
    a->next_clear_check = now + CLEAR_CHECK_US;
    if (store_meta_get(a->st, AUDIT_CLEARED_META, &v, &len) != CKR_OK || v == NULL)
        goto out;
    if (len == 8)
        cleared = (int64_t)be_get(v, 8);
    for (int t = 0; t < 2; t++) {
        alert_table *tab = t == 0 ? &a->users : &a->keys;
        for (size_t i = 0; i < ALERT_TABLE; i++)
            for (alert_counter *c = tab->chain[i]; c != NULL; c = c->next)
                if (c->tripped_until != 0 && c->tripped_wall_us <= cleared)
                    reset(a, c);
    }
out:
    free(v);
}

static void record_alert(audit_log *a, const crossing *x, const char *user, CK_OBJECT_HANDLE key,
                         const char *key_label)
{
    audit_event e;
    audit_row row;
    char decision[sizeof(row.decision)];

    memset(&e, 0, sizeof(e));
    e.kind = AUDIT_ALERT;
    e.function = "decrypt-rate-alert";
    e.mech = CK_UNAVAILABLE_INFORMATION;
    e.user = user;
    e.key = key;
    audit_copy_str(e.key_label, sizeof(e.key_label), key_label);
    e.rv = a->pol.alert_deny ? CKR_ACTION_PROHIBITED : CKR_OK;
    audit_row_from_event(&row, &a->ctx, &e, audit_now_us());
    snprintf(decision, sizeof(decision), "%s: %s", a->pol.alert_deny ? "denied" : "alert", x->msg);
    audit_copy_str(row.decision, sizeof(row.decision), decision);
    pthread_mutex_lock(&a->write_mu);
    CK_RV rv = audit_write_locked(a, &row, 1);
    pthread_mutex_unlock(&a->write_mu);
    (void)rv; /* the warning below still goes out */
    audit_syslog(a, LOG_WARNING, x->msg);
}

bool audit_decrypt_alert(audit_log *a, const char *user, CK_OBJECT_HANDLE key,
                         const char *key_label)
{
    crossing ux = { 0 }, kx = { 0 };
    bool deny = false;
    char what[128];

    if (a == NULL || (a->pol.alert_decrypt_per_user == 0 && a->pol.alert_decrypt_per_key == 0))
        return false;
    int64_t now = mono_us(), wall = audit_now_us();
    int64_t bucket = now / ((int64_t)a->pol.alert_window_s * 1000000 / ALERT_BUCKETS);
    pthread_mutex_lock(&a->alert_mu);
    check_cleared_locked(a, now);
    if (a->pol.alert_decrypt_per_user != 0 && user != NULL && user[0] != '\0') {
        alert_counter *c = counter(&a->users, name_hash(user), user, true, bucket);
        snprintf(what, sizeof(what), "user %.63s", user);
        if (c != NULL)
            deny |= tick(a, c, a->pol.alert_decrypt_per_user, now, wall, what, &ux);
    }
    if (a->pol.alert_decrypt_per_key != 0 && key != 0) {
        const char *label = key_label != NULL ? key_label : "";
        alert_counter *c = counter(&a->keys, key, label, false, bucket);
        if (label[0] != '\0')
            snprintf(what, sizeof(what), "key %.63s", label);
        else
            snprintf(what, sizeof(what), "key handle %lu", (unsigned long)key);
        if (c != NULL)
            deny |= tick(a, c, a->pol.alert_decrypt_per_key, now, wall, what, &kx);
    }
    pthread_mutex_unlock(&a->alert_mu);
    if (ux.crossed)
        record_alert(a, &ux, user, 0, NULL);
    if (kx.crossed)
        record_alert(a, &kx, user, key, key_label);
    return deny;
}

CK_RV audit_clear_alerts(audit_log *a)
{
    uint8_t be[8];
    uint64_t wall;

    if (a == NULL)
        return CKR_OK;
    pthread_mutex_lock(&a->alert_mu);
    audit_alerts_free(a);
    pthread_mutex_unlock(&a->alert_mu);
    /* Every other process drops the alerts it raised before now. */
    wall = (uint64_t)audit_now_us();
    be_put(be, wall, 8);
    return store_meta_put(a->st, AUDIT_CLEARED_META, be, sizeof(be));
}
