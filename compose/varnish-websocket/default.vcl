# Varnish's WebSocket recipe: upgrade requests are piped (a raw TCP tunnel to the backend)
# instead of fetched, with their Upgrade and Connection headers copied onto the backend
# request. Everything else is the built-in VCL. Listen address is given with -a.
vcl 4.1;

backend default {
    .host = "${WSLAB_UPSTREAM_HOST}";
    .port = "${WSLAB_UPSTREAM_PORT}";
}

sub vcl_recv {
    if (req.http.Upgrade ~ "(?i)websocket") {
        return (pipe);
    }
}

sub vcl_pipe {
    if (req.http.Upgrade) {
        set bereq.http.Upgrade = req.http.Upgrade;
        set bereq.http.Connection = req.http.Connection;
    }
}
