package executor

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/paceline/paceline/internal/spec"
)

// Shims for the Pacemaker tools OCF agents call. Agents report their
// promotion preference with crm_master (Pacemaker < 2.1: "crm_master -l
// reboot -v N"), crm_attribute --promotion ("crm_attribute --promotion -v
// N", ocf:pacemaker:Stateful) or ocf_promotion_score from ocf-shellfuncs,
// which calls ${HA_SBIN_DIR}/crm_master when crm_master is in PATH; some
// also keep node attributes with crm_attribute -n or attrd_updater, and
// ask crm_node -n for the node name. Without a running Pacemaker those
// calls fail ("Could not connect to the CIB"); paceline writes small
// shell scripts instead, prepends their directory to the agents' PATH and
// sets HA_SBIN_DIR to it. The scripts keep each value in a file:
//
//	StateDir/scores/<OCF_RESOURCE_INSTANCE>   promotion score
//	StateDir/attrs/<name>                     other node attributes
//
// and the executor reads the score after every action of the instance and
// reports it as ActiveInstance.PromotionScore. INFINITY is 1000000.

const crmAttributeShim = `#!/bin/sh
# paceline shim for crm_attribute and crm_master (written by the paceline
# executor; see internal/executor/shims.go). Promotion scores go to
# $PACELINE_SCORE_DIR/<instance>, other attributes to $PACELINE_ATTR_DIR/<name>.
me=${0##*/}
promo=
[ "$me" = crm_master ] && promo=1
rsc=$OCF_RESOURCE_INSTANCE
name= value= action= quiet= node= dflt=
while [ $# -gt 0 ]; do
	case $1 in
	-p|--promotion)
		promo=1
		case ${2-} in ''|-*) ;; *) rsc=$2; shift;; esac;;
	--promotion=*) promo=1; rsc=${1#*=};;
	-v|--update|--attr-value) action=set; value=${2-}; shift;;
	--update=*|--attr-value=*) action=set; value=${1#*=};;
	-D|--delete) action=del;;
	-G|--query|--get-value) action=get;;
	-q|-Q|--quiet) quiet=1;;
	-n|--name|--attr-name) name=${2-}; shift;;
	--name=*|--attr-name=*) name=${1#*=};;
	-r|--resource) rsc=${2-}; shift;;
	--resource=*) rsc=${1#*=};;
	-N|--node) node=${2-}; shift;;
	--node=*) node=${1#*=};;
	-d|--default) dflt=${2-}; shift;;
	--default=*) dflt=${1#*=};;
	-l|--lifetime|-t|--type|-s|--set-name|-i|--id) shift;;
	*) ;;
	esac
	shift
done
nosuch() { echo "Error performing operation: No such device or address" >&2; exit 105; }
if [ -n "$node" ] && [ -n "$PACELINE_NODE" ] && [ "$node" != "$PACELINE_NODE" ]; then
	# Another node's attribute: paceline keeps this node's only.
	[ "$action" = get ] && nosuch
	exit 0
fi
if [ -n "$promo" ]; then
	dir=$PACELINE_SCORE_DIR
	key=$OCF_RESOURCE_INSTANCE
	# The resource named with or without its clone number is this instance.
	if [ -n "$rsc" ] && [ "$rsc" != "$OCF_RESOURCE_INSTANCE" ] && [ "$rsc" != "${OCF_RESOURCE_INSTANCE%:[0-9]*}" ]; then
		key=$rsc
	fi
	attr=master-$key
else
	dir=$PACELINE_ATTR_DIR
	key=$name
	attr=$name
fi
if [ -z "$dir" ] || [ -z "$key" ]; then
	echo "$me (paceline shim): no attribute name given" >&2
	exit 64
fi
f=$dir/$(printf '%s' "$key" | tr '/' '_')
case $action in
set)
	case $value in
	INFINITY|+INFINITY|infinity|+infinity) value=1000000;;
	-INFINITY|-infinity) value=-1000000;;
	esac
	mkdir -p "$dir" && printf '%s\n' "$value" > "$f.$$" && mv -f "$f.$$" "$f" || exit 1;;
del)
	rm -f "$f";;
*)
	if [ -f "$f" ]; then
		v=$(cat "$f")
	elif [ -n "$dflt" ]; then
		v=$dflt
	else
		nosuch
	fi
	if [ -n "$quiet" ]; then
		printf '%s\n' "$v"
	else
		printf 'scope=status  name=%s value=%s\n' "$attr" "$v"
	fi;;
esac
exit 0
`

const attrdUpdaterShim = `#!/bin/sh
# paceline shim for attrd_updater (written by the paceline executor):
# node attributes in $PACELINE_ATTR_DIR/<name>.
name= value= action= node=
while [ $# -gt 0 ]; do
	case $1 in
	-n|--name) name=${2-}; shift;;
	--name=*) name=${1#*=};;
	-U|-v|-B|--update|--update-both|--value) action=set; value=${2-}; shift;;
	--update=*|--update-both=*|--value=*) action=set; value=${1#*=};;
	-D|--delete) action=del;;
	-Q|--query) action=get;;
	-N|--node) node=${2-}; shift;;
	--node=*) node=${1#*=};;
	-d|--delay|-s|--set|-Y|--update-delay) shift;;
	*) ;;
	esac
	shift
done
if [ -n "$node" ] && [ -n "$PACELINE_NODE" ] && [ "$node" != "$PACELINE_NODE" ]; then
	[ "$action" = get ] && { echo "Could not query value of $name: attribute does not exist" >&2; exit 105; }
	exit 0
fi
[ -n "$name" ] && [ -n "$PACELINE_ATTR_DIR" ] || { echo "attrd_updater (paceline shim): no attribute name given" >&2; exit 64; }
f=$PACELINE_ATTR_DIR/$(printf '%s' "$name" | tr '/' '_')
case $action in
set) mkdir -p "$PACELINE_ATTR_DIR" && printf '%s\n' "$value" > "$f.$$" && mv -f "$f.$$" "$f" || exit 1;;
del) rm -f "$f";;
get)
	[ -f "$f" ] || { echo "Could not query value of $name: attribute does not exist" >&2; exit 105; }
	printf 'name="%s" host="%s" value="%s"\n' "$name" "$PACELINE_NODE" "$(cat "$f")";;
esac
exit 0
`

const crmNodeShim = `#!/bin/sh
# paceline shim for crm_node (written by the paceline executor).
case ${1-} in
-q|--quorum) echo 1;;
-l|--list) echo "1 $PACELINE_NODE member";;
*) echo "$PACELINE_NODE";;
esac
exit 0
`

// shimDirs are where the shims and their data live.
type shimDirs struct {
	bin, scores, attrs string
}

// writeShims writes the shims under stateDir.
func writeShims(stateDir string) (shimDirs, error) {
	if stateDir == "" {
		return shimDirs{}, fmt.Errorf("no state directory")
	}
	d := shimDirs{bin: filepath.Join(stateDir, "bin"), scores: filepath.Join(stateDir, "scores"), attrs: filepath.Join(stateDir, "attrs")}
	for _, dir := range []string{d.bin, d.scores, d.attrs} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return shimDirs{}, err
		}
	}
	for name, body := range map[string]string{
		"crm_attribute": crmAttributeShim, "crm_master": crmAttributeShim,
		"attrd_updater": attrdUpdaterShim, "crm_node": crmNodeShim,
	} {
		p := filepath.Join(d.bin, name)
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o755); err != nil {
			return shimDirs{}, err
		}
		if err := os.Rename(tmp, p); err != nil {
			return shimDirs{}, err
		}
	}
	return d, nil
}

// defaultPath is the agents' PATH after the shims.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// env is what OCF actions need to find the shims.
func (d shimDirs) env(node string) map[string]string {
	if d.bin == "" {
		return nil
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	return map[string]string{
		"HA_SBIN_DIR":        d.bin,
		"PATH":               d.bin + ":" + path,
		"PACELINE_SCORE_DIR": d.scores,
		"PACELINE_ATTR_DIR":  d.attrs,
		"PACELINE_NODE":      node,
	}
}

// score returns the promotion score instance's agent set, or nil.
func (d shimDirs) score(instance string) *int {
	if d.scores == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(d.scores, strings.ReplaceAll(instance, "/", "_")))
	if err != nil {
		return nil
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil
	}
	const inf = 1000000
	v = min(max(v, -inf), inf)
	return &v
}

// scoreOf is score for a resource's instance in slot.
func (d shimDirs) scoreOf(res *spec.Resource, slot int) *int {
	name := res.Name
	if res.Clone() {
		name += ":" + strconv.Itoa(slot)
	}
	return d.score(name)
}

// MaxNodeAttributes bounds how many agent-set node attributes a node
// reports (each at most 256 bytes of value).
const MaxNodeAttributes = 64

// NodeAttributes returns the node attributes agents set here with
// crm_attribute -n / attrd_updater -n (e.g. ocf:pacemaker:ping's "pingd"),
// for location rules. The shims write through a temporary file and a
// rename, so the directory's modification time changes with every set or
// delete: the files are read again only then (this runs at every renewal).
func (e *Executor) NodeAttributes() map[string]string {
	d := e.dirs.attrs
	if d == "" {
		return nil
	}
	fi, err := os.Stat(d)
	if err != nil {
		return nil
	}
	e.attrMu.Lock()
	defer e.attrMu.Unlock()
	if !fi.ModTime().Equal(e.attrMtime) {
		e.attrCache, e.attrMtime = readAttrs(d), fi.ModTime()
	}
	return maps.Clone(e.attrCache)
}

// tmpAttr matches the shims' temporary files (NAME.PID) before their rename.
var tmpAttr = regexp.MustCompile(`\.[0-9]+$`)

func readAttrs(d string) map[string]string {
	entries, err := os.ReadDir(d)
	if err != nil {
		return nil
	}
	var out map[string]string
	for _, en := range entries {
		name := en.Name()
		if !en.Type().IsRegular() || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "#") || tmpAttr.MatchString(name) || len(out) >= MaxNodeAttributes {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, name))
		if err != nil || len(b) > 256 {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = strings.TrimSpace(string(b))
	}
	return out
}
