/* A fuzz target around a library nobody here wrote: Debian's libexpat (libexpat1-dev's libexpat.a, expat 2.5.0,
   linked statically with glibc). Parses the file named by argv[1], or stdin without one, as XML with namespace
   processing, in two pieces (the parser's incremental path), counting what its callbacks see, and prints the
   counts or expat's error. No planted bug: whatever crashes here is expat's (or tandem's).
   Build: gcc -static -O2 -s -o bin/fuzz-expat-glibc src/realfuzz/expat.c -lexpat
   Usage: fuzz-expat-glibc [FILE] */
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INPUT_MAX (1 << 20)

struct counts {
    long elements, attributes, text_bytes, comments, pis, cdata, doctypes, entities, depth, depth_max;
};

static void XMLCALL on_start(void *data, const XML_Char *name, const XML_Char **attrs) {
    struct counts *c = data;
    (void)name;
    c->elements++;
    for (; *attrs; attrs += 2)
        c->attributes++;
    if (++c->depth > c->depth_max)
        c->depth_max = c->depth;
}

static void XMLCALL on_end(void *data, const XML_Char *name) {
    (void)name;
    ((struct counts *)data)->depth--;
}

static void XMLCALL on_text(void *data, const XML_Char *s, int len) {
    (void)s;
    ((struct counts *)data)->text_bytes += len;
}

static void XMLCALL on_comment(void *data, const XML_Char *s) {
    (void)s;
    ((struct counts *)data)->comments++;
}

static void XMLCALL on_pi(void *data, const XML_Char *target, const XML_Char *pi) {
    (void)target, (void)pi;
    ((struct counts *)data)->pis++;
}

static void XMLCALL on_cdata(void *data) { ((struct counts *)data)->cdata++; }

static void XMLCALL on_doctype(void *data, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                               int internal) {
    (void)name, (void)sysid, (void)pubid, (void)internal;
    ((struct counts *)data)->doctypes++;
}

static void XMLCALL on_entity(void *data, const XML_Char *name, int param, const XML_Char *value, int len,
                              const XML_Char *base, const XML_Char *sysid, const XML_Char *pubid,
                              const XML_Char *notation) {
    (void)name, (void)param, (void)value, (void)len, (void)base, (void)sysid, (void)pubid, (void)notation;
    ((struct counts *)data)->entities++;
}

int main(int argc, char **argv) {
    FILE *in = argc > 1 ? fopen(argv[1], "rb") : stdin;
    if (!in) {
        perror(argv[1]);
        return 2;
    }
    char *buf = malloc(INPUT_MAX);
    if (!buf)
        return 2;
    size_t n = fread(buf, 1, INPUT_MAX, in);
    struct counts c;
    memset(&c, 0, sizeof c);
    XML_Parser p = XML_ParserCreateNS(NULL, '|');
    if (!p)
        return 2;
    XML_SetUserData(p, &c);
    XML_SetElementHandler(p, on_start, on_end);
    XML_SetCharacterDataHandler(p, on_text);
    XML_SetCommentHandler(p, on_comment);
    XML_SetProcessingInstructionHandler(p, on_pi);
    XML_SetStartCdataSectionHandler(p, on_cdata);
    XML_SetStartDoctypeDeclHandler(p, on_doctype);
    XML_SetEntityDeclHandler(p, on_entity);
    size_t half = n / 2;
    int ok = XML_Parse(p, buf, (int)half, 0) != XML_STATUS_ERROR &&
             XML_Parse(p, buf + half, (int)(n - half), 1) != XML_STATUS_ERROR;
    if (!ok) {
        printf("error at line %lu: %s\n", (unsigned long)XML_GetCurrentLineNumber(p),
               XML_ErrorString(XML_GetErrorCode(p)));
    } else {
        printf("elements %ld attributes %ld text %ld comments %ld pis %ld cdata %ld doctypes %ld entities %ld "
               "depth %ld\n",
               c.elements, c.attributes, c.text_bytes, c.comments, c.pis, c.cdata, c.doctypes, c.entities,
               c.depth_max);
    }
    XML_ParserFree(p);
    free(buf);
    return ok ? 0 : 1;
}
