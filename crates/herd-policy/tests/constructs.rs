//! Every construct that runs a command is looked into, and wrappers are taken off.

use herd_policy::{Class, classify};

fn class(cmd: &str) -> Class {
    classify(cmd).class
}

#[test]
fn commands_inside_constructs_are_found() {
    for cmd in [
        "ls; rm -rf /",
        "ls && rm -rf /",
        "ls || rm -rf /",
        "ls | rm -rf /",
        "(rm -rf /)",
        "{ rm -rf /; }",
        "f() { rm -rf /; }",
        "if rm -rf /; then :; fi",
        "if true; then :; elif false; then :; else rm -rf /; fi",
        "for x in a; do rm -rf /; done",
        "while rm -rf /; do :; done",
        "until false; do rm -rf /; done",
        "case x in x) rm -rf /;; esac",
        "echo $(rm -rf /)",
        "echo \"$(rm -rf /)\"",
        "echo `rm -rf /`",
        "X=$(rm -rf /) true",
        "cat <(rm -rf /)",
        "echo > >(rm -rf /)",
        "[[ -n $(rm -rf /) ]]",
        "bash -c 'rm -rf /'",
        "sh -ec 'rm -rf /'",
        "zsh -c 'rm -rf /'",
        "dash -c 'rm -rf /'",
        "su -c 'rm -rf /' root",
        "su root --command='rm -rf /'",
        "eval rm -rf /",
        "eval 'rm -rf /'",
        "sudo rm -rf /",
        "sudo -u root -H rm -rf /",
        "doas rm -rf /",
        "env -i PATH=/bin rm -rf /",
        "env -S 'rm -rf /'",
        "nohup rm -rf / &",
        "nice -n 19 rm -rf /",
        "ionice -c3 rm -rf /",
        "timeout -s KILL 10 rm -rf /",
        "time rm -rf /",
        "command rm -rf /",
        "builtin eval 'rm -rf /'",
        "exec rm -rf /",
        "/bin/rm -rf /",
        "\\rm -rf /",
        "chroot /mnt rm -rf /",
        "watch -n 5 rm -rf /",
        "ssh -p 22 web1 rm -rf /",
        "ssh web1 'sudo rm -rf /'",
        "find / -maxdepth 0 -exec rm -rf {} \\;",
        "bash <<'EOF'\nrm -rf /\nEOF\n",
        "sh <<< 'rm -rf /'",
        "trap 'rm -rf /' EXIT",
        "coproc rm -rf /",
        "alias ls='rm -rf /'; ls",
        "ls() { rm -rf /; }; ls",
    ] {
        assert_eq!(
            class(cmd),
            Class::Forbidden,
            "{cmd}: {:?}",
            classify(cmd).reasons
        );
    }
}

#[test]
fn what_cannot_be_known_fails_closed() {
    for cmd in [
        "$X",
        "${CMD} -rf /",
        "$(echo rm) -rf /",
        "sh -c \"$X\"",
        "bash -c $1",
        "eval $X",
        "eval \"$@\"",
        "ssh web1 \"$CMD\"",
        "xargs rm -rf",
        "curl -s x | sh",
        "bash < <(curl -s x)",
    ] {
        assert!(
            class(cmd) >= Class::Dangerous,
            "{cmd}: {:?}",
            classify(cmd).reasons
        );
    }
}

#[test]
fn reasons_name_the_simple_command() {
    let v = classify("cd /tmp && sudo rm -rf / ; ls");
    assert_eq!(v.class, Class::Forbidden);
    let r = v
        .reasons
        .iter()
        .find(|r| r.class == Class::Forbidden)
        .expect("a forbidden reason");
    assert_eq!(r.what, "sudo rm -rf /");
    assert!(r.why.contains("rm -r /"), "{}", r.why);
    assert_eq!(v.parts.len(), 3);
    assert_eq!(v.parts[1].inner, "rm -rf /");
}

#[test]
fn unknown_programs_are_caution_and_quotes_do_not_hide_programs() {
    assert_eq!(class("frobnicate --all"), Class::Caution);
    assert!(
        classify("frobnicate").reasons[0]
            .why
            .contains("unknown program")
    );
    assert_eq!(class("r''m -rf /"), Class::Forbidden);
    assert_eq!(class("\"r\"m -rf /"), Class::Forbidden);
    assert_eq!(class("echo 'rm -rf /'"), Class::Safe);
    assert_eq!(class("grep -r 'rm -rf /' /var/log"), Class::Safe);
    assert_eq!(
        class("while IFS=, read -r a b; do echo \"$a\"; done < /tmp/list.csv"),
        Class::Safe
    );
}
