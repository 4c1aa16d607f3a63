"""faults_control.py: the control line of faults_proxy.py, for the programs that drive it
(faults_unknown.py, faults_restart.py): control("mode") sends one command line and returns the
proxy's one-line answer."""

import socket


def connect(ctrl_port):
    """A control function on the proxy listening for commands on 127.0.0.1:ctrl_port."""
    cf = socket.create_connection(("127.0.0.1", ctrl_port), 5).makefile("rwb", buffering=0)

    def control(line):
        cf.write((line + "\n").encode())
        return cf.readline().decode().strip()

    return control
