/* test_markers.c: the directory-marker rules of kv/dirs.c through kv/kv.h's operations, on a
 * real nats-server (build/unit-server-tests, run by `make unit`): concurrent creators of one
 * directory, a listing that repairs a directory written without a marker, rmdir of such a
 * directory once repaired, and old delete markers removed by a scan (kv/tombs.c).
 *
 * The runner process starts one nats-server on a free loopback port before the tests
 * (ReportHook PRE_ALL) and stops it after (POST_ALL); every test runs in its own process
 * (Criterion's), connects through kv/ and checks what landed with its own nats.c connection
 * (an independent client). Each test uses its own bucket. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <errno.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kv/internal.h"
#include "kv/kv.h"

/* ---- the server (runner process) ---- */

static pid_t server_pid;
static char store[] = "/tmp/asya-unit-js.XXXXXX";

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(s, (struct sockaddr *)&a, &l) < 0)
        return -1;
    close(s);
    return ntohs(a.sin_port);
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    int port = free_port();
    if (port < 0 || !mkdtemp(store))
        return;
    char ports[16], url[64];
    snprintf(ports, sizeof ports, "%d", port);
    server_pid = fork();
    if (server_pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", ports, "-js", "-sd",
               store, (char *)NULL);
        _exit(127);
    }
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    setenv("NATS_URL", url, 1);
    setenv("ASYA_STATE_LOG", "error", 1);
    /* up when JetStream answers */
    for (int i = 0; i < 100; i++) {
        natsConnection *nc = NULL;
        jsCtx *js = NULL;
        jsAccountInfo *ai = NULL;
        int up = natsConnection_ConnectTo(&nc, url) == NATS_OK &&
                 natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
                 js_GetAccountInfo(&ai, js, NULL, NULL) == NATS_OK;
        jsAccountInfo_Destroy(ai);
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
        if (up)
            return;
        usleep(50000);
    }
    fprintf(stderr, "test_markers: nats-server did not come up on %s\n", url);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        char cmd[64];
        snprintf(cmd, sizeof cmd, "rm -rf %s", store);
        if (system(cmd) != 0)
            fprintf(stderr, "test_markers: could not remove %s\n", store);
    }
}

/* ---- an independent client, and a bucket per test ---- */

static natsConnection *nc;
static jsCtx *js;
static kvStore *kvs;
static const kv_ops *ops;
static kv_mount *m;

static void setup(void)
{
    const char *url = getenv("NATS_URL");
    cr_assert(url, "no server (see the runner's stderr)");
    cr_assert_eq(natsConnection_ConnectTo(&nc, url), NATS_OK);
    cr_assert_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    char name[64];
    snprintf(name, sizeof name, "unit_%d", (int)getpid());
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = name;
    cr_assert_eq(js_CreateKeyValue(&kvs, js, &kc), NATS_OK);
    ops = kv_backend();
    cr_assert_eq(ops->init(KV_REVS_PER_THREAD), 0);
    cr_assert_eq(ops->mount(name, "u", 0, &m), 0);
}

static void teardown(void)
{
    kvStore_Destroy(kvs);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

TestSuite(markers, .init = setup, .fini = teardown, .timeout = 60);

/* 1 when key has a live entry, as another client sees it. */
static int present(const char *key)
{
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, kvs, key);
    kvEntry_Destroy(e);
    return s == NATS_OK;
}

static void put(const char *key, const char *val)
{
    cr_assert_eq(kvStore_PutString(NULL, kvs, key, val), NATS_OK, "put %s", key);
}

/* ---- concurrent creators ---- */

#define CREATORS 8
static int results[CREATORS];

static void *mkdir_one(void *arg)
{
    int i = (int)(intptr_t)arg;
    results[i] = ops->mkdir(m, "race");
    return NULL;
}

static void *mkparents_one(void *arg)
{
    int i = (int)(intptr_t)arg;
    char rel[64];
    snprintf(rel, sizeof rel, "p/q/r/f%d", i);
    results[i] = ops->mkparents(m, rel);
    return NULL;
}

static void run_creators(void *(*fn)(void *))
{
    pthread_t t[CREATORS];
    for (int i = 0; i < CREATORS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, fn, (void *)(intptr_t)i), 0);
    for (int i = 0; i < CREATORS; i++)
        pthread_join(t[i], NULL);
}

Test(markers, concurrent_mkdir_one_wins)
{
    run_creators(mkdir_one);
    int made = 0, exist = 0;
    for (int i = 0; i < CREATORS; i++) {
        made += results[i] == 0;
        exist += results[i] == -EEXIST;
    }
    cr_expect_eq(made, 1, "exactly one mkdir makes the directory (%d did)", made);
    cr_expect_eq(exist, CREATORS - 1, "the others get EEXIST (%d did)", exist);
    cr_expect(present("u.race/"), "the marker is on the server");
}

Test(markers, concurrent_mkparents_all_succeed)
{
    run_creators(mkparents_one);
    for (int i = 0; i < CREATORS; i++)
        cr_expect_eq(results[i], 0, "creator %d: %s", i, strerror(-results[i]));
    cr_expect(present("u.p/") && present("u.p/q/") && present("u.p/q/r/"),
              "every ancestor's marker is on the server");
    kv_stat st;
    cr_expect_eq(ops->stat(m, "p/q/r", &st), 0);
    cr_expect(st.is_dir);
}

/* ---- a listing repairs a directory written without a marker; rmdir after ---- */

static int listed_as_dir(const kv_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            return l->v[i].is_dir;
    return -1;
}

Test(markers, listing_repairs_then_rmdir)
{
    put("u.users/1.json", "{}");
    kv_stat st;
    cr_expect_eq(ops->stat(m, "users", &st), -ENOENT, "no marker: stat does not see it");
    cr_expect_eq(ops->parent(m, "users/2.json"), -ENOENT, "no create in it");
    kv_list l = { 0 };
    cr_assert_eq(ops->list(m, "", &l), 0);
    cr_expect_eq(listed_as_dir(&l, "users"), 1, "the listing shows it as a directory");
    ops->release_list(&l);
    cr_expect(present("u.users/"), "the listing wrote its marker");
    cr_expect_eq(ops->stat(m, "users", &st), 0);
    cr_expect(st.is_dir, "stat agrees");
    cr_expect_eq(ops->parent(m, "users/2.json"), 0, "a create in it is allowed");
    cr_expect_eq(ops->rmdir(m, "users"), -ENOTEMPTY);
    cr_expect_eq(ops->remove(m, "users/1.json"), 0);
    cr_expect_eq(ops->rmdir(m, "users"), 0, "rmdir of the repaired directory once empty");
    cr_expect(!present("u.users/"), "its marker is gone");
    cr_expect_eq(ops->stat(m, "users", &st), -ENOENT);
}

Test(markers, listing_of_the_directory_itself_repairs_it)
{
    put("u.a/b/c.json", "{}");
    kv_list l = { 0 };
    cr_assert_eq(ops->list(m, "a/b", &l), 0);
    cr_expect_eq(l.n, 1);
    ops->release_list(&l);
    cr_expect(present("u.a/b/"), "the listed directory's marker is written");
    kv_stat st;
    cr_expect_eq(ops->stat(m, "a/b", &st), 0);
    cr_expect(st.is_dir);
}

/* ---- delete markers removed by a scan ---- */

Test(markers, scan_removes_old_delete_markers_only)
{
    char key[64];
    for (int i = 0; i < TOMBS_AUTO_MIN; i++) {
        snprintf(key, sizeof key, "u.t%d", i);
        put(key, "x");
        cr_assert_eq(kvStore_Delete(kvs, key), NATS_OK);
    }
    sleep(TOMBS_GRACE_S + 1);
    put("u.fresh", "x");
    cr_assert_eq(kvStore_Delete(kvs, "u.fresh"), NATS_OK);  /* too young to go */
    kv_list l = { 0 };
    cr_assert_eq(ops->list(m, "", &l), 0);
    ops->release_list(&l);
    kvEntryList h = { 0 };
    cr_expect_eq(kvStore_History(&h, kvs, "u.t1", NULL), NATS_NOT_FOUND,
                 "an old marker is removed");
    kvEntryList_Destroy(&h);
    cr_expect_eq(kvStore_History(&h, kvs, "u.fresh", NULL), NATS_OK, "a young one stays");
    kvEntryList_Destroy(&h);
    uint64_t rev = 0;
    cr_expect_eq(ops->commit(m, "t1", "new", 3, KV_COMMIT_EXCL, &rev), 0,
                 "create-only on a removed key");
}

/* The race that matters, made deterministic: a scan saw k's delete marker at sequence S,
 * another client then wrote k again, and only then does the removal run. The purge is
 * bounded by S: the new value stays. */
Test(markers, removal_keeps_a_value_written_after_the_marker)
{
    put("u.k", "old");
    cr_assert_eq(kvStore_Delete(kvs, "u.k"), NATS_OK);
    kvEntryList h = { 0 };
    cr_assert_eq(kvStore_History(&h, kvs, "u.k", NULL), NATS_OK);
    cr_assert(h.Count >= 1 && kvEntry_Operation(h.Entries[h.Count - 1]) == kvOp_Delete);
    uint64_t marker = kvEntry_Revision(h.Entries[h.Count - 1]);
    kvEntryList_Destroy(&h);
    put("u.k", "new");              /* after the scan saw the marker */
    tomb one = { .key = strdup("u.k"), .seq = marker };
    tombs t = { .seen = TOMBS_AUTO_MIN, .n = 1, .cap = 1, .v = &one };
    kv_conn *c;
    const kv_bucket *b;
    cr_assert_eq(ops_open(m, "u.k", &c, &b), 0);
    cr_expect_eq(tombs_sweep(c, b, &t), 0);
    conn_release(c);
    tombs_stats st;
    tombs_last(&st);
    cr_expect_eq(st.removed, 1, "the purge request succeeded");
    free(one.key);
    kvEntry *e = NULL;
    cr_assert_eq(kvStore_Get(&e, kvs, "u.k"), NATS_OK, "the value written after the marker "
                 "survives");
    cr_expect_eq(strcmp(kvEntry_ValueString(e), "new"), 0);
    kvEntry_Destroy(e);
}
