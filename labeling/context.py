from labeling import roles as role_rules


def roles(request):
    """Template flags for the navigation: which parts of the site this user may open."""
    user = request.user
    return {
        "is_annotator": role_rules.is_annotator(user),
        "is_researcher": role_rules.is_researcher(user),
        "is_reviewer": role_rules.is_reviewer(user),
        "is_admin": role_rules.is_admin(user),
    }
