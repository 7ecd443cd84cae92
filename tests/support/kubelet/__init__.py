"""The node agent: what the kubelet, a CNI bridge plugin and a container runtime do for one node,
played by local processes on this machine, for the test cluster's real controllers.

- ``node``: registers the Node with its CPU, memory and GPU capacity (``nvidia.com/gpu`` and
  the product label, as the device plugin and GPU feature discovery report them).
- ``network``: a bridge with the node's pod subnet; each pod in a network namespace of its own,
  with its own IP.
- ``pods``: each pod bound to the node run by a worker: volumes, init containers, containers,
  restarts, status, graceful deletion.
- ``containers``, ``launch``: one container's process, in its pod's network namespace and a
  mount namespace of its own, its volumes bound at their paths, as its user.
- ``volumes``, ``environment``, ``probes``: what the kubelet provides a container, as it does.
- ``images``: which local program plays each image (no image can be pulled here).
- ``services``: Service ClusterIPs routed to ready endpoints inside each pod's namespace (a
  stand-in for kube-proxy's rules, kept per pod).
- ``dns``: ``<service>.<namespace>.svc.cluster.local`` for the pods (a stand-in for CoreDNS's
  kubernetes plugin: Service A records only), named by each pod's ``/etc/resolv.conf``.
- ``agent``: watches the pods bound to the node and keeps one worker per pod.

What is simulated, and how: no image is pulled or unpacked (``images``: the container runs this
checkout's program, in the host's root filesystem, with its volumes bound over it); no cgroups
(resource limits are not enforced); Service rules live in each pod's namespace rather than the
node's, and the API server's loopback endpoint is reached through a relay; cluster DNS serves Service names only; GPUs are capacity on the Node only. Everything else the controllers
see, pod IPs, probes, restarts, exit codes, termination messages and deletion, is what the
processes did. Needs root (network and mount namespaces), as a kubelet does.
"""
