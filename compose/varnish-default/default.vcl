# Only a backend; everything else is Varnish's built-in VCL, which has no
# "return (pipe)" for Upgrade requests. Listen address is given with -a.
vcl 4.1;

backend default {
    .host = "${WSLAB_UPSTREAM_HOST}";
    .port = "${WSLAB_UPSTREAM_PORT}";
}
