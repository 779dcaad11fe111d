/* grammar/internal.h: what the grammar layer's files share.
 *
 * The front ends (json.c, schema.c, regex.c, gbnf.c, choice in compile.c) all write into one
 * builder: an NFA over bytes split into rules, whose edges are epsilon, a byte range, or a
 * call of another rule (with the state to return to). compile.c turns that into a `gram`:
 * each rule determinized over bytes (a DFA whose edges are byte classes and calls), which
 * the matcher (match.c) runs as a pushdown automaton over bytes with a set of stacks.
 *
 * Every front end runs under one gbudget: a cap on states and on work, and a deadline, so a
 * hostile schema, regex or grammar fails with a message instead of eating the machine. */
#ifndef KILN_GRAMMAR_INTERNAL_H
#define KILN_GRAMMAR_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "grammar/grammar.h"

/* ---- budget ---- */

typedef struct gbudget {
    int64_t deadline_ns; /* gbudget_now_ns() past which compiling fails */
    uint64_t ticks;      /* work done; the clock is read every 4096 */
    uint64_t max_ticks;
} gbudget;

/* ---- builder (NFA) ---- */

enum { NE_EPS, NE_BYTES, NE_CALL };

typedef struct nedge {
    int32_t to;   /* target state (for a call: the state to return to) */
    int32_t next; /* next edge of the same state, -1 at the end */
    int32_t rule; /* NE_CALL: the callee */
    uint8_t kind, lo, hi;
} nedge;

typedef struct nrule {
    char *name;
    int32_t start, final; /* -1 until defined */
} nrule;

typedef struct nfa {
    int32_t *head; /* (cap_states) first edge of each state, -1 if none */
    int32_t n_states, cap_states;
    nedge *edges;
    int32_t n_edges, cap_edges;
    nrule *rules;
    int32_t n_rules, cap_rules;
    int32_t max_states; /* gram_limits.max_states */
    gbudget *bud;
    int rc;      /* sticky: the first error (0 while fine); every builder call is then a no-op */
    kl_err *err; /* where that error's message went */
} nfa;

/* A piece of automaton with one entry and one exit state (equal for the empty string). A
 * negative s means an error happened (it is in nfa.rc): callers may keep combining. */
typedef struct frag {
    int32_t s, e;
} frag;

#define FRAG_ERR ((frag){-1, -1})

/* Code point range, inclusive. */
typedef struct cprange {
    uint32_t lo, hi;
} cprange;

/* The compiling thread's CPU time: the budget counts work done, not time spent waiting for
 * a core on a loaded machine (a wall-clock deadline refused good schemas under load). */
int64_t gbudget_now_ns(void);
void nfa_init(nfa *b, const gram_limits *lim, gbudget *bud, kl_err *err);
void nfa_free(nfa *b);
/* Records an error (the first one wins) and returns it. */
int nfa_fail(nfa *b, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Counts n units of work; fails the build past the budget. Returns nfa.rc. */
int nfa_tick(nfa *b, uint64_t n);
int32_t nfa_state(nfa *b);
void nfa_eps(nfa *b, int32_t from, int32_t to);
void nfa_bytes(nfa *b, int32_t from, int32_t to, uint8_t lo, uint8_t hi);
void nfa_call(nfa *b, int32_t from, int32_t to, int32_t rule);
/* A new rule named name (copied); its body comes later with nfa_rule_define. -1 on error. */
int32_t nfa_rule(nfa *b, const char *name, size_t len);
/* The rule named name, or -1. */
int32_t nfa_rule_find(const nfa *b, const char *name, size_t len);
void nfa_rule_define(nfa *b, int32_t rule, frag body);

/* Fragments (combinators). Each returns FRAG_ERR once the builder has failed. */
frag fr_empty(nfa *b);
frag fr_bytes(nfa *b, uint8_t lo, uint8_t hi);
frag fr_lit(nfa *b, const char *s, size_t n);
/* Any one code point in the ranges (sorted or not, overlapping or not; surrogates are
 * never produced), as well-formed UTF-8. */
frag fr_cps(nfa *b, const cprange *r, int n);
frag fr_call(nfa *b, int32_t rule);
frag fr_seq(nfa *b, frag x, frag y);
/* Alternation: start with fr_alt_new, add branches, use the result. */
frag fr_alt_new(nfa *b);
void fr_alt_add(nfa *b, frag alt, frag x);
frag fr_opt(nfa *b, frag x);
frag fr_star(nfa *b, frag x);
frag fr_plus(nfa *b, frag x);
/* x between min and max times (max < 0: unbounded); gen makes one fresh copy of x. */
typedef frag (*fr_gen)(nfa *b, void *ctx);
frag fr_repeat(nfa *b, fr_gen gen, void *ctx, int64_t min, int64_t max);
/* The same with first (already made) as the first copy. */
frag fr_repeat_first(nfa *b, frag first, fr_gen gen, void *ctx, int64_t min, int64_t max);

/* Sorts and merges ranges in place, drops surrogates; returns the new count. */
int cp_normalize(cprange *r, int n);
/* Complement of normalized ranges over 0..0x10FFFF minus surrogates into out (n + 1
 * entries at most). Returns the count. */
int cp_complement(const cprange *r, int n, cprange *out);

/* ---- compiled grammar ---- */

/* One state of a rule's DFA. */
typedef struct gstate {
    int32_t rule;
    int32_t trans; /* first of rule's n_class targets in gram.trans, -1 if no byte edge */
    int32_t call0; /* calls in gram.calls[call0 .. call0 + n_call) */
    int16_t n_call;
    uint8_t accept; /* the rule may end here */
    uint8_t simple; /* has byte edges, no calls, not accepting: a byte step is one lookup */
} gstate;

typedef struct gcall {
    int32_t rule; /* callee */
    int32_t ret;  /* state to continue in once it ends */
} gcall;

typedef struct grule {
    int32_t start; /* DFA start state */
    int32_t n_class;
    uint8_t cls[256]; /* byte -> class */
} grule;

typedef struct gtable gtable; /* token tables for one vocabulary (mask.c) */

struct gram {
    _Atomic int refs;
    int32_t n_states, n_rules, root;
    gstate *states; /* (n_states) */
    int32_t *trans; /* per state with byte edges, n_class targets (-1: none) */
    size_t n_trans;
    gcall *calls;
    int32_t n_calls;
    grule *rules; /* (n_rules) */
    int max_depth;
    size_t struct_bytes;        /* everything above */
    _Atomic size_t table_bytes; /* token tables, grown as states are visited */
    size_t max_table_bytes;
    pthread_mutex_t mu; /* guards tables */
    gtable *tables;     /* one per vocabulary that used this grammar */
    char desc[64];      /* what it was compiled from ("json schema", "regex", ...) */
};

/* ---- running the automaton (sim.c) ----
 *
 * A position is a set of stacks. A stack is a configuration (state, parent): the state
 * the top rule is in, and a node holding where each caller continues once it ends. Nodes
 * are (return state, parent, depth) in an append-only pool, shared by every stack above
 * them. Parent -1 is the bottom of the whole output (the root rule ending there ends the
 * language); -2 is "unknown" (the token tables follow one state alone: ending the rule
 * there escapes into a context they do not know). Only configurations whose state reads
 * bytes are kept: calls are entered and ended rules return at once (the closure). */

#define GSIM_CLOSURE_MAX 4096 /* configurations one closure visits at most */
#define GP_BOTTOM        (-1)
#define GP_UNKNOWN       (-2)

typedef struct gconf {
    int32_t state, parent;
} gconf;

typedef struct gnode {
    int32_t state, parent, depth;
} gnode;

typedef struct gsim {
    const gram *g;
    gnode *nodes;
    int32_t n_nodes, cap_nodes;
    int max_depth; /* stack depth at most; deeper calls are not taken */
    /* closure scratch: a table of what this closure has seen, stamped by generation */
    uint64_t *key;
    int32_t *val;
    uint32_t *gen_of;
    uint32_t gen, cap, n_keys;
    gconf *work;
    int32_t n_work, cap_work;
    /* results of the last closure */
    bool acc;      /* a stack ended at GP_BOTTOM: the output may end here */
    bool esc;      /* a stack ended at GP_UNKNOWN */
    bool overflow; /* a call was not taken (depth) or the closure was cut (work) */
    int32_t max_seen_depth;
} gsim;

int gsim_init(gsim *m, const gram *g, int max_depth);
void gsim_free(gsim *m);
/* Depth of configurations whose parent is p (1 at the bottom). */
static inline int32_t gsim_depth(const gsim *m, int32_t p)
{
    return p < 0 ? 1 : m->nodes[p].depth + 1;
}
/* Appends to *out (n, cap) the closure of the configurations seeds (each already in a state
 * just entered), setting acc / esc / overflow. Returns the count appended, -1 out of memory. */
int32_t gsim_closure(gsim *m, const gconf *seeds, int32_t n_seeds, gconf **out, int32_t *n,
                     int32_t *cap);
/* Reads one byte from the configurations in[0..n_in): appends the next ones to *out like
 * gsim_closure. in must not point into *out's buffer. */
int32_t gsim_step(gsim *m, const gconf *in, int32_t n_in, uint8_t byte, gconf **out, int32_t *n,
                  int32_t *cap);
/* The configurations right after the rule of configuration c ends (it pops to c.parent):
 * closure from the parent's return state. */
int32_t gsim_pop(gsim *m, gconf c, gconf **out, int32_t *n, int32_t *cap);

/* compile.c: turns a built NFA (root rule set) into *out. Frees nothing of b. */
int gram_from_nfa(gram **out, nfa *b, int32_t root, const gram_limits *lim, const char *desc,
                  kl_err *err);

/* ---- front ends writing into a builder ---- */

/* json.c: JSON pieces. Whitespace between tokens: nothing, one space, or a newline and up to
 * 20 spaces or tabs (bounded, so a model cannot pad forever). */
frag js_ws(nfa *b);
/* A JSON string: '"' chars '"' with chars between min and max code points (max < 0: no
 * bound); escapes count as one. */
frag js_string(nfa *b, int64_t min, int64_t max);
/* A string whose content matches the regex (JSON-escaped where needed). */
frag js_string_regex(nfa *b, const char *re, size_t len, int depth_left);
/* A string other than the given ones (for additional property names), without escapes. */
frag js_string_except(nfa *b, const char *const *names, const size_t *lens, int n);
frag js_number(nfa *b);
frag js_integer(nfa *b);
/* An integer in [lo, hi] (either side may be open: has_lo/has_hi false). */
frag js_integer_range(nfa *b, bool has_lo, int64_t lo, bool has_hi, int64_t hi);
/* Any JSON value / any object: calls to rules made once per builder. */
frag js_any_value(nfa *b);
frag js_any_object(nfa *b);

/* regex.c: appends the language of a regular expression: a full match, or with search the
 * JSON Schema meaning (the pattern may match anywhere unless anchored by ^ and $). In json
 * mode every character is written as it must appear inside a JSON string: '"', '\' and
 * control characters escaped. */
frag rx_compile(nfa *b, const char *re, size_t len, bool json, bool search, int max_depth);

/* schema.c / gbnf.c: the whole language of a schema (JSON text) / GBNF source into b.
 * Return the root rule, or -1 with the error in b. */
int32_t schema_build(nfa *b, const char *text, size_t len, int max_nesting);
int32_t gbnf_build(nfa *b, const char *src, size_t len, int max_nesting);

/* Copies the UTF-8 encoding of cp to out (4 bytes at most); returns the length. */
int utf8_put(uint32_t cp, char *out);
#endif
