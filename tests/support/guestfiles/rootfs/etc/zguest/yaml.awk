# Flattens the YAML subset cloud-init seeds use into "path=value" lines:
#   key: value          -> key=value            (nested keys joined with ".")
#   key: [a, b]         -> key[]=a, key[]=b
#   key:\n  - a         -> key[]=a              ("- [a, b]" -> key[]='a' 'b', a quoted argv)
#   - k: v (in a list)  -> list.k=v
#   key: {a: 1}         -> key.a=1
# Comments, "---" and block scalars' bodies are skipped. JSON on one line is split first.
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
function unq(s) {
    s = trim(s)
    if (s ~ /^".*"$/ || s ~ /^'.*'$/) s = substr(s, 2, length(s) - 2)
    return s
}
function path(   p, k) {
    p = ""
    for (k = 1; k <= depth; k++) p = p (k > 1 ? "." : "") key[k]
    return p
}
function shq(s) { gsub(/'/, "'\\''", s); return "'" s "'" }
function flow(v, sep,   n, parts, k, out, x) {
    v = substr(v, 2, length(v) - 2)
    n = split(v, parts, ",")
    out = ""
    for (k = 1; k <= n; k++) {
        x = unq(parts[k])
        out = out (k > 1 ? sep : "") (sep == " " ? shq(x) : x)
    }
    return out
}
/^[ \t]*#/ || /^[ \t]*$/ || /^---/ || /^\.\.\./ { next }
{
    line = $0
    sub(/\r$/, "", line)
    match(line, /^ */)
    ind = RLENGTH
    if (block >= 0 && ind > block) next
    block = -1
    body = substr(line, ind + 1)
    item = 0
    if (body ~ /^-( |$)/) { item = 1; body = trim(substr(body, 2)) }
    if (item) {
        while (depth > 0 && kind[depth] > ind) depth--
    } else {
        while (depth > 0 && kind[depth] >= ind) depth--
    }
    if (item && body !~ /^("[^"]*"|'[^']*'|[A-Za-z0-9_.\/-]+)[ \t]*:([ \t]|$)/) {
        print path() "[]=" (body ~ /^\[.*\]$/ ? flow(body, " ") : unq(body))
        next
    }
    if (!match(body, /^("[^"]*"|'[^']*'|[A-Za-z0-9_.\/-]+)[ \t]*:([ \t]|$)/)) next
    k = unq(substr(body, 1, RLENGTH))
    sub(/[ \t]*:[ \t]*$/, "", k)
    k = unq(k)
    v = trim(substr(body, RLENGTH + 1))
    depth++
    key[depth] = k
    kind[depth] = item ? ind + 2 : ind
    if (v == "") next
    if (v == "|" || v == ">" || v ~ /^[|>][-+0-9]*$/) { block = kind[depth]; next }
    if (v ~ /^\{.*\}$/) {
        n = split(flow(v, "\n"), parts, "\n")
        for (j = 1; j <= n; j++) if (match(parts[j], /:[ \t]*/))
            print path() "." unq(substr(parts[j], 1, RSTART - 1)) "=" unq(substr(parts[j], RSTART + RLENGTH))
    } else if (v ~ /^\[.*\]$/) {
        n = split(flow(v, "\n"), parts, "\n")
        for (j = 1; j <= n; j++) if (parts[j] != "") print path() "[]=" parts[j]
    } else {
        print path() "=" unq(v)
    }
}
BEGIN { depth = 0; block = -1 }
