"""An edit that can't be done on this photo: answered as NO_IMAGE with the reason, never charged."""


class EditRefused(Exception):
    pass
