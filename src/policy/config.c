/* Configuration (see config.h for the keys): defaults, then one INI file
 * parsed by libinih. Unknown keys are errors, so a typo never silently
 * weakens a policy. */
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "policy/config.h"

#define SYSTEM_CONF "/etc/custos/custos.conf"

void config_defaults(custos_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    if (xdg != NULL && xdg[0] == '/')
        snprintf(cfg->store_path, sizeof(cfg->store_path), "%s/custos", xdg);
    else if (home != NULL && home[0] == '/')
        snprintf(cfg->store_path, sizeof(cfg->store_path), "%s/.local/share/custos", home);
    else
        snprintf(cfg->store_path, sizeof(cfg->store_path), "/var/lib/custos");
    cfg->store_mmap_mib = CONFIG_MMAP_MIB_MAX;
    cfg->pin_max_retries = 10;
    cfg->pin_min_len = 4;
    cfg->pin_max_len = 255;
    cfg->kdf.alg = KDF_SCRYPT;
    cfg->kdf.p1 = 15; /* N = 2^15, r = 8, p = 1: about 32 MiB and ~50 ms */
    cfg->kdf.p2 = 8;
    cfg->kdf.p3 = 1;
    cfg->legacy_modes = false;
    cfg->audit.enabled = true;
    cfg->audit.flush_ms = 1000;
    cfg->audit.alert_window_s = 60;
}

struct parse {
    custos_config *cfg;
    char *err;
    size_t errlen;
    bool failed;
    unsigned pbkdf2_iter;
    unsigned scrypt_log2n;
    int kdf;  /* 0 unset, else crypto_kdf_alg */
};

static bool parse_uint(const char *v, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi)
        return false;
    *out = (unsigned)x;
    return true;
}

static bool parse_bool(const char *v, bool *out)
{
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "on"))
        *out = true;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "off"))
        *out = false;
    else
        return false;
    return true;
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
    struct parse *p = user;
    custos_config *c = p->cfg;
    bool ok;

    if (!strcmp(section, "store") && !strcmp(name, "path")) {
        ok = value[0] == '/' && strlen(value) < sizeof(c->store_path);
        if (ok)
            snprintf(c->store_path, sizeof(c->store_path), "%s", value);
    } else if (!strcmp(section, "store") && !strcmp(name, "mmap_mib")) {
        ok = parse_uint(value, 0, CONFIG_MMAP_MIB_MAX, &c->store_mmap_mib);
    } else if (!strcmp(section, "pin") && !strcmp(name, "max_retries")) {
        ok = parse_uint(value, 1, 100, &c->pin_max_retries);
    } else if (!strcmp(section, "pin") && !strcmp(name, "min_length")) {
        ok = parse_uint(value, 1, 255, &c->pin_min_len);
    } else if (!strcmp(section, "pin") && !strcmp(name, "max_length")) {
        ok = parse_uint(value, 1, 4096, &c->pin_max_len);
    } else if (!strcmp(section, "pin") && !strcmp(name, "kdf")) {
        ok = true;
        if (!strcmp(value, "scrypt"))
            p->kdf = KDF_SCRYPT;
        else if (!strcmp(value, "pbkdf2"))
            p->kdf = KDF_PBKDF2_SHA256;
        else
            ok = false;
    } else if (!strcmp(section, "pin") && !strcmp(name, "scrypt_log2n")) {
        ok = parse_uint(value, 10, 22, &p->scrypt_log2n);
    } else if (!strcmp(section, "pin") && !strcmp(name, "pbkdf2_iterations")) {
        ok = parse_uint(value, 1000, 100000000, &p->pbkdf2_iter);
    } else if (!strcmp(section, "policy") && !strcmp(name, "legacy_modes")) {
        ok = parse_bool(value, &c->legacy_modes);
    } else if (!strcmp(section, "policy") && !strcmp(name, "caller_iv")) {
        ok = !strcmp(value, "count") || !strcmp(value, "refuse");
        c->caller_iv_refuse = !strcmp(value, "refuse");
    } else if (!strcmp(section, "audit") && !strcmp(name, "enabled")) {
        ok = parse_bool(value, &c->audit.enabled);
    } else if (!strcmp(section, "audit") && !strcmp(name, "required")) {
        ok = parse_bool(value, &c->audit.required);
    } else if (!strcmp(section, "audit") && !strcmp(name, "syslog")) {
        ok = parse_bool(value, &c->audit.syslog);
    } else if (!strcmp(section, "audit") && !strcmp(name, "data_ops")) {
        ok = !strcmp(value, "each") || !strcmp(value, "aggregate");
        c->audit.each_data_op = !strcmp(value, "each");
    } else if (!strcmp(section, "audit") && !strcmp(name, "flush_ms")) {
        ok = parse_uint(value, 10, 60000, &c->audit.flush_ms);
    } else if (!strcmp(section, "alerts") && !strcmp(name, "window_seconds")) {
        ok = parse_uint(value, 1, 86400, &c->audit.alert_window_s);
    } else if (!strcmp(section, "alerts") && !strcmp(name, "decrypt_per_user")) {
        unsigned v;
        ok = parse_uint(value, 0, 1000000000, &v);
        c->audit.alert_decrypt_per_user = v;
    } else if (!strcmp(section, "alerts") && !strcmp(name, "decrypt_per_key")) {
        unsigned v;
        ok = parse_uint(value, 0, 1000000000, &v);
        c->audit.alert_decrypt_per_key = v;
    } else if (!strcmp(section, "alerts") && !strcmp(name, "action")) {
        ok = !strcmp(value, "log") || !strcmp(value, "deny");
        c->audit.alert_deny = !strcmp(value, "deny");
    } else {
        snprintf(p->err, p->errlen, "unknown setting [%s] %s", section, name);
        p->failed = true;
        return 0;
    }
    if (!ok) {
        snprintf(p->err, p->errlen, "bad value for [%s] %s", section, name);
        p->failed = true;
        return 0;
    }
    return 1;
}

CK_RV config_load_file(custos_config *cfg, const char *path, char *err, size_t errlen)
{
    config_defaults(cfg);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read configuration %s: %s", path, strerror(errno));
        return CKR_GENERAL_ERROR;
    }
    struct parse p = { cfg, err, errlen, false, 0, 0, 0 };
    int line = ini_parse_file(f, on_entry, &p);
    fclose(f);
    if (p.failed || line != 0) {
        if (!p.failed)
            snprintf(err, errlen, "%s: syntax error at line %d", path, line);
        else {
            size_t n = strlen(err);
            snprintf(err + n, errlen - n, " in %s at line %d", path, line);
        }
        return CKR_GENERAL_ERROR;
    }
    if (cfg->pin_min_len > cfg->pin_max_len) {
        snprintf(err, errlen, "%s: [pin] min_length is above max_length", path);
        return CKR_GENERAL_ERROR;
    }
    if (p.kdf == KDF_PBKDF2_SHA256) {
        cfg->kdf.alg = KDF_PBKDF2_SHA256;
        cfg->kdf.p1 = p.pbkdf2_iter ? p.pbkdf2_iter : 600000; /* OWASP 2023 */
        cfg->kdf.p2 = cfg->kdf.p3 = 0;
    } else if (p.scrypt_log2n) {
        cfg->kdf.p1 = p.scrypt_log2n;
    }
    snprintf(cfg->source, sizeof(cfg->source), "%s", path);
    return CKR_OK;
}

CK_RV config_load(custos_config *cfg, char *err, size_t errlen)
{
    const char *path = getenv("CUSTOS_CONF");
    if (path != NULL && path[0] != '\0')
        return config_load_file(cfg, path, err, errlen);
    if (access(SYSTEM_CONF, F_OK) == 0)
        return config_load_file(cfg, SYSTEM_CONF, err, errlen);
    config_defaults(cfg);
    return CKR_OK;
}
