"""Form fields whose errors a screen reader hears: the widget is marked aria-invalid and described
by its error paragraph (`<p class="error" id="{auto_id}-error">`, see templates/feed/_field.html)."""
from django import template

register = template.Library()


@register.simple_tag
def field_widget(field, form_error_id="", **attrs):
    """The field's widget with `attrs`, plus aria-invalid / aria-describedby when it has errors.

    `form_error_id` names the form-wide error paragraph (templates/feed/_form_errors.html): when
    the form has such an error (a failed log-in), it marks and describes every field.
    """
    described = [f"{field.auto_id}_helptext"] if field.help_text else []
    if field.errors:
        attrs["aria-invalid"] = "true"
        described.append(error_id(field))
    elif form_error_id and field.form.non_field_errors():
        attrs["aria-invalid"] = "true"
        described.append(form_error_id)
    if described:
        attrs["aria-describedby"] = " ".join(described)
    return field.as_widget(attrs=attrs)


@register.filter
def error_id(field) -> str:
    return f"{field.auto_id}-error"
