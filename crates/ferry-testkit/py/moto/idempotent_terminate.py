# TerminateInstances is idempotent on AWS (imported by launcher.py).
#
# AWS: "This operation is idempotent; if you terminate an instance more than once, each call
# succeeds." Terminated instances stay visible for about an hour.
#   https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_TerminateInstances.html
# moto 5.2.5 tears the instance down again on a second call and fails deleting its network
# interface a second time (InvalidNetworkInterfaceID.NotFound). Ferry terminates the recorded
# instance id whatever a Describe said (a rollback, then ferry-clean, may both terminate the
# same box), so the kit answers a repeated terminate as AWS does: success, state terminated,
# nothing touched.
import copy

from moto.ec2.models.instances import Instance

_terminate = Instance.terminate


def terminate(self):
    if self._state.name == "terminated":
        return copy.copy(self._state)
    return _terminate(self)


Instance.terminate = terminate
