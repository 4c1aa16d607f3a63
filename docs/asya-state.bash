# bash completion for asya-state (installed as
# $(PREFIX)/share/bash-completion/completions/asya-state). Completes commands, options,
# bucket names (bucket info/rm, --bucket) and state paths (ls, cat, put, rm, ...) by asking
# `asya-state ls` for the directory being typed.

_asya_state_paths()
{
    local cur=$1 dir base names
    case $cur in
        */*) dir=${cur%/*}/ ;;
        *) dir= ;;
    esac
    base=${dir%/}
    names=$(asya-state ls -- ${base:+"$base"} 2>/dev/null) || return
    local IFS=$'\n' n
    for n in $names; do
        COMPREPLY+=("$dir$n")
    done
    COMPREPLY=($(compgen -W "${COMPREPLY[*]}" -- "$cur"))
    compopt -o nospace 2>/dev/null
}

_asya_state()
{
    local cur prev words cword
    _init_completion 2>/dev/null || {
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    }
    local cmds="ls cat put rm rev key history revert watch bucket check run serve health"
    local i cmd= sub=
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            -s|--server|--creds|-b|--bucket) ((i++)) ;;
            -*) ;;
            *) if [ -z "$cmd" ]; then cmd=${words[i]}; elif [ -z "$sub" ]; then sub=${words[i]}; fi ;;
        esac
    done
    case $prev in
        --creds|--ttl|--max-value-size|--replicas|--history|--revision|-r)
            [ "$prev" = --creds ] && COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
        --storage) COMPREPLY=($(compgen -W "file memory" -- "$cur")); return ;;
        -b|--bucket)
            COMPREPLY=($(compgen -W "$(asya-state bucket ls 2>/dev/null)" -- "$cur")); return ;;
    esac
    if [ -z "$cmd" ]; then
        COMPREPLY=($(compgen -W "$cmds --server --creds --bucket --help --version" -- "$cur"))
        return
    fi
    local opts="--help"
    case $cmd in
        ls) opts="-l --long --json --help" ;;
        put) opts="--create --revision --help" ;;
        rm) opts="-d --dir -f --force --help" ;;
        history) opts="--json --help" ;;
        watch) opts="--json --initial --help" ;;
        check) opts="--read-only --fix --help" ;;
        serve) opts="--max-body --max-body-total --header-timeout --help" ;;
        health) opts="--socket --timeout --help" ;;
        bucket)
            if [ -z "$sub" ]; then
                COMPREPLY=($(compgen -W "add ls info edit rm --help" -- "$cur")); return
            fi
            case $sub in
                add) opts="--replicas --ttl --max-value-size --history --storage --help" ;;
                ls) opts="-l --long --json --help" ;;
                info) opts="--json --help" ;;
                edit) opts="--history --ttl --max-value-size --max-bytes --json --help" ;;
            esac
            if [[ $cur != -* && ( $sub == info || $sub == edit || $sub == rm ) ]]; then
                COMPREPLY=($(compgen -W "$(asya-state bucket ls 2>/dev/null)" -- "$cur"))
                return
            fi ;;
        run) [[ $cur != -* ]] && { COMPREPLY=($(compgen -c -- "$cur")); return; } ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    case $cmd in
        ls|cat|put|rm|rev|key|history|revert|watch) _asya_state_paths "$cur" ;;
    esac
}
complete -F _asya_state asya-state
