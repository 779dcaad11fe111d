/* net/status_page.c: see status_page.h. The HTML is assembled into the binary as it is
 * (.incbin: no generated C array to keep in step with the file; the Makefile rebuilds this
 * object when the page changes). */
#include "net/status_page.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stddef.h>

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".globl net_status_html, net_status_html_len\n" /* global: LTO may split us */
        ".hidden net_status_html, net_status_html_len\n"
        "net_status_html:\n"
        ".incbin \"src/net/status.html\"\n"
        "net_status_html_end:\n"
        ".balign 8\n"
        "net_status_html_len: .quad net_status_html_end - net_status_html\n"
        ".previous\n");
extern const char net_status_html[];
extern const size_t net_status_html_len; /* the assembler measures it */

void net_status_page_send(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/html; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    /* inline script and style only, fetches only to this origin, no framing by other sites */
    evhttp_add_header(h, "Content-Security-Policy",
                      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                      "connect-src 'self'; frame-ancestors 'none'");
    struct evbuffer *b = evbuffer_new();
    if (b) evbuffer_add_reference(b, net_status_html, net_status_html_len, NULL, NULL);
    evhttp_send_reply(req, 200, "OK", b);
    if (b) evbuffer_free(b);
}
